"""The statements of the run event stream, for both dialects (`run_events`, migration 0013).

Appends ignore an event whose `key` is already stored: emitting an event twice (a replay
after a takeover emits again what it replays) stores it once, at its first position.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from tether.store.base import NewRunEvent, RunEventRecord

Conn = Any
"""A psycopg async connection (not imported: SQLite-only installs have no psycopg)."""


def _dumps(data: Any) -> str | None:
    return None if data is None else json.dumps(data, separators=(",", ":"), default=str)


def _row(row: Sequence[Any], data: Any) -> RunEventRecord:
    return RunEventRecord(id=int(row[0]), run_id=str(row[1]), kind=str(row[2]),
                          at=float(row[3]), seq=None if row[4] is None else int(row[4]),
                          data=data)


# --- SQLite ----------------------------------------------------------------------------------------


def sqlite_append(conn: sqlite3.Connection, events: Sequence[NewRunEvent]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO run_events (run_id, kind, at, seq, data, key) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(e.run_id, e.kind, e.at, e.seq, None if e.data is None else _dumps(e.data),
          e.key) for e in events],
    )


def sqlite_read(
    conn: sqlite3.Connection, run_id: str, after: int, limit: int
) -> list[RunEventRecord]:
    rows = conn.execute(
        "SELECT id, run_id, kind, at, seq, data FROM run_events "
        "WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?",
        (run_id, after, limit),
    ).fetchall()
    return [_row(r, None if r[5] is None else json.loads(r[5])) for r in rows]


# --- PostgreSQL ------------------------------------------------------------------------------------


async def postgres_append(conn: Conn, events: Sequence[NewRunEvent]) -> None:
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO run_events (run_id, kind, at, seq, data, key) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
            [(e.run_id, e.kind, e.at, e.seq, _dumps(e.data), e.key) for e in events],
        )


async def postgres_read(conn: Conn, run_id: str, after: int, limit: int) -> list[RunEventRecord]:
    cur = await conn.execute(
        "SELECT id, run_id, kind, at, seq, data FROM run_events "
        "WHERE run_id = %s AND id > %s ORDER BY id LIMIT %s",
        (run_id, after, limit),
    )
    return [_row(r, None if r[5] is None else json.loads(r[5])) for r in await cur.fetchall()]
