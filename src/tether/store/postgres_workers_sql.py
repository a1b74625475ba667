"""PostgreSQL statements of the worker registry (see `WorkerRecord` in `tether.store.base`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tether.store.base import WorkerRecord
from tether.store.postgres_sql import NOW, Conn, dumps, loads

_COLUMNS = "owner, name, host, pid, started_at, last_seen, lease_seconds, workflows"
_FORGET_AFTER = 3600.0


async def register_worker(conn: Conn, worker: WorkerRecord) -> None:
    await conn.execute(f"DELETE FROM workers WHERE last_seen < {NOW} - %s", (_FORGET_AFTER,))
    await conn.execute(
        f"INSERT INTO workers ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, {NOW}, %s, %s) "
        "ON CONFLICT (owner) DO UPDATE SET name = excluded.name, host = excluded.host, "
        "pid = excluded.pid, started_at = excluded.started_at, last_seen = excluded.last_seen, "
        "lease_seconds = excluded.lease_seconds, workflows = excluded.workflows",
        (worker.owner, worker.name, worker.host, worker.pid, worker.started_at,
         worker.lease_seconds, dumps([list(pair) for pair in worker.workflows])),
    )


async def touch_worker(conn: Conn, owner: str) -> bool:
    cur = await conn.execute(f"UPDATE workers SET last_seen = {NOW} WHERE owner = %s", (owner,))
    return cur.rowcount > 0


async def remove_worker(conn: Conn, owner: str) -> None:
    await conn.execute("DELETE FROM workers WHERE owner = %s", (owner,))


async def list_workers(conn: Conn, live_leases: float) -> list[WorkerRecord]:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM workers WHERE last_seen + lease_seconds * %s >= {NOW} "
        "ORDER BY started_at, owner",
        (live_leases,),
    )
    return [_worker(row) for row in await cur.fetchall()]


def _worker(row: Sequence[Any]) -> WorkerRecord:
    listed: list[list[str]] = loads(row[7]) or []
    pairs = tuple((str(pair[0]), str(pair[1])) for pair in listed)
    return WorkerRecord(row[0], row[1], row[2], int(row[3]), float(row[4]), float(row[5]),
                        float(row[6]), pairs)


async def pending_versions(conn: Conn) -> list[tuple[str, str | None, str, int]]:
    cur = await conn.execute(
        "SELECT workflow, version, status, count(*) FROM runs "
        "WHERE status IN ('queued', 'waiting') GROUP BY workflow, version, status"
    )
    return [(r[0], r[1], r[2], int(r[3])) for r in await cur.fetchall()]
