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


# One statement for the whole batch: executemany sent a Bind/Execute per event, which a busy
# worker paid for every row, on both sides. The ordinality keeps the events' order in `id`.
POSTGRES_APPEND = """
INSERT INTO run_events (run_id, kind, at, seq, data, key)
SELECT e.run_id, e.kind, e.at, e.seq, e.data, e.key
  FROM unnest(%b::text[], %b::text[], %b::float8[], %b::int[], %b::text[], %b::text[])
       WITH ORDINALITY AS e(run_id, kind, at, seq, data, key, ord)
 ORDER BY e.ord
ON CONFLICT (key) DO NOTHING
"""


def postgres_params(events: Sequence[NewRunEvent]) -> tuple[list[Any], ...]:
    """The parameters of `POSTGRES_APPEND` (also used where events ride along in another
    statement, see `tether.store.postgres_sql`)."""
    return (
        [e.run_id for e in events],
        [e.kind for e in events],
        [e.at for e in events],
        [e.seq for e in events],
        [_dumps(e.data) for e in events],
        [e.key for e in events],
    )


async def postgres_append(conn: Conn, events: Sequence[NewRunEvent]) -> None:
    await conn.execute(POSTGRES_APPEND, postgres_params(events))


async def postgres_read(conn: Conn, run_id: str, after: int, limit: int) -> list[RunEventRecord]:
    cur = await conn.execute(
        "SELECT id, run_id, kind, at, seq, data FROM run_events "
        "WHERE run_id = %s AND id > %s ORDER BY id LIMIT %s",
        (run_id, after, limit),
    )
    return [_row(r, None if r[5] is None else json.loads(r[5])) for r in await cur.fetchall()]
