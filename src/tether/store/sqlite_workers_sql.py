"""The SQLite statements of the worker registry (`Store.register_worker` and the rest), as
`postgres_workers_sql` holds PostgreSQL's."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from tether.store.base import WorkerRecord
from tether.store.sqlite_sql import dumps, loads

_WORKER_COLUMNS = "owner, name, host, pid, started_at, last_seen, lease_seconds, workflows"
_FORGET_WORKERS_AFTER = 3600.0


def register_worker(conn: sqlite3.Connection, worker: WorkerRecord) -> None:
    now = time.time()
    conn.execute("DELETE FROM workers WHERE last_seen < ?", (now - _FORGET_WORKERS_AFTER,))
    conn.execute(
        f"INSERT OR REPLACE INTO workers ({_WORKER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (worker.owner, worker.name, worker.host, worker.pid, worker.started_at, now,
         worker.lease_seconds, dumps([list(pair) for pair in worker.workflows])),
    )


def touch_worker(conn: sqlite3.Connection, owner: str) -> bool:
    cur = conn.execute("UPDATE workers SET last_seen = ? WHERE owner = ?", (time.time(), owner))
    return cur.rowcount > 0


def remove_worker(conn: sqlite3.Connection, owner: str) -> None:
    conn.execute("DELETE FROM workers WHERE owner = ?", (owner,))


def list_workers(conn: sqlite3.Connection, live_leases: float) -> list[WorkerRecord]:
    rows = conn.execute(
        f"SELECT {_WORKER_COLUMNS} FROM workers WHERE last_seen + lease_seconds * ? >= ? "
        "ORDER BY started_at, owner",
        (live_leases, time.time()),
    ).fetchall()
    return [worker_from_row(row) for row in rows]


def worker_from_row(row: Sequence[Any]) -> WorkerRecord:
    listed: list[list[str]] = loads(row[7]) or []
    pairs = tuple((str(pair[0]), str(pair[1])) for pair in listed)
    return WorkerRecord(row[0], row[1], row[2], int(row[3]), float(row[4]), float(row[5]),
                        float(row[6]), pairs)
