"""The schedules table in both dialects (the `Store` schedule methods call these).

One module for both dialects because the statements are few and alike: SQLite functions take
a `sqlite3.Connection`, PostgreSQL ones (``pg_*``) an async psycopg connection.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, LiteralString

from tether.store.base import ScheduleRecord

if TYPE_CHECKING:  # psycopg is optional: SQLite users never import it
    from tether.store.postgres_sql import Conn

_COLUMNS = (
    "name, cron, timezone, workflow, input, labels, overlap, catchup, paused, next_at, "
    "last_at, last_run_id, created_at, updated_at"
)
# A changed cron or time zone moves the next tick; any other change keeps it (and a pause).
_UPSERT_TAIL = (
    "ON CONFLICT (name) DO UPDATE SET workflow = excluded.workflow, input = excluded.input, "
    "labels = excluded.labels, overlap = excluded.overlap, catchup = excluded.catchup, "
    "next_at = CASE WHEN schedules.cron = excluded.cron AND schedules.timezone = "
    "excluded.timezone THEN schedules.next_at ELSE excluded.next_at END, "
    "cron = excluded.cron, timezone = excluded.timezone, updated_at = excluded.updated_at "
)


def _record(row: Sequence[Any], decode: bool) -> ScheduleRecord:
    def value(v: Any) -> Any:
        return json.loads(v) if decode and isinstance(v, str) else v

    return ScheduleRecord(
        name=row[0], cron=row[1], timezone=row[2], workflow=row[3], input=value(row[4]),
        labels=value(row[5]), overlap=row[6], catchup=row[7], paused=bool(row[8]),
        next_at=float(row[9]), last_at=row[10], last_run_id=row[11],
        created_at=float(row[12]), updated_at=float(row[13]),
    )


def _params(rec: ScheduleRecord, now: float) -> tuple[Any, ...]:
    return (rec.name, rec.cron, rec.timezone, rec.workflow, json.dumps(rec.input),
            json.dumps(rec.labels), rec.overlap, rec.catchup, rec.paused, rec.next_at,
            rec.last_at, rec.last_run_id, now, now)


# --- SQLite ------------------------------------------------------------------------------------


def put_schedule(conn: sqlite3.Connection, rec: ScheduleRecord) -> ScheduleRecord:
    marks = ", ".join("?" * 14)
    conn.execute(f"INSERT INTO schedules ({_COLUMNS}) VALUES ({marks}) {_UPSERT_TAIL}",
                 _params(rec, time.time()))
    found = get_schedule(conn, rec.name)
    assert found is not None
    return found


def get_schedule(conn: sqlite3.Connection, name: str) -> ScheduleRecord | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM schedules WHERE name = ?", (name,)).fetchone()
    return None if row is None else _record(row, True)


def list_schedules(conn: sqlite3.Connection, due_by: float | None) -> list[ScheduleRecord]:
    if due_by is None:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM schedules ORDER BY name").fetchall()
    else:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM schedules WHERE paused = 0 AND next_at <= ? ORDER BY next_at",
            (due_by,),
        ).fetchall()
    return [_record(row, True) for row in rows]


def set_schedule_paused(conn: sqlite3.Connection, name: str, paused: bool) -> ScheduleRecord | None:
    conn.execute("UPDATE schedules SET paused = ?, updated_at = ? WHERE name = ?",
                 (paused, time.time(), name))
    return get_schedule(conn, name)


def delete_schedule(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount == 1


def advance_schedule(
    conn: sqlite3.Connection, name: str, expected: float, next_at: float,
    fired_at: float | None, run_id: str | None,
) -> bool:
    return conn.execute(
        "UPDATE schedules SET next_at = ?, last_at = coalesce(?, last_at), "
        "last_run_id = coalesce(?, last_run_id), updated_at = ? WHERE name = ? AND next_at = ?",
        (next_at, fired_at, run_id, time.time(), name, expected),
    ).rowcount == 1


# --- PostgreSQL --------------------------------------------------------------------------------


async def pg_put_schedule(conn: Conn, rec: ScheduleRecord) -> ScheduleRecord:
    marks: LiteralString = "%s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s, %s, %s, %s, %s"
    cur = await conn.execute(
        f"INSERT INTO schedules ({_COLUMNS}) VALUES ({marks}) {_UPSERT_TAIL} RETURNING {_COLUMNS}",
        _params(rec, time.time()),
    )
    row = await cur.fetchone()
    assert row is not None
    return _record(row, False)


async def pg_get_schedule(conn: Conn, name: str) -> ScheduleRecord | None:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM schedules WHERE name = %s", (name,))
    row = await cur.fetchone()
    return None if row is None else _record(row, False)


async def pg_list_schedules(conn: Conn, due_by: float | None) -> list[ScheduleRecord]:
    if due_by is None:
        cur = await conn.execute(f"SELECT {_COLUMNS} FROM schedules ORDER BY name")
    else:
        query: LiteralString = (
            f"SELECT {_COLUMNS} FROM schedules WHERE NOT paused AND next_at <= %s "
            "ORDER BY next_at"
        )
        cur = await conn.execute(query, (due_by,))
    return [_record(row, False) for row in await cur.fetchall()]


async def pg_set_schedule_paused(conn: Conn, name: str, paused: bool) -> ScheduleRecord | None:
    cur = await conn.execute(
        f"UPDATE schedules SET paused = %s, updated_at = %s WHERE name = %s RETURNING {_COLUMNS}",
        (paused, time.time(), name),
    )
    row = await cur.fetchone()
    return None if row is None else _record(row, False)


async def pg_delete_schedule(conn: Conn, name: str) -> bool:
    cur = await conn.execute("DELETE FROM schedules WHERE name = %s", (name,))
    return cur.rowcount == 1


async def pg_advance_schedule(
    conn: Conn, name: str, expected: float, next_at: float, fired_at: float | None,
    run_id: str | None,
) -> bool:
    cur = await conn.execute(
        "UPDATE schedules SET next_at = %s, last_at = coalesce(%s, last_at), "
        "last_run_id = coalesce(%s, last_run_id), updated_at = %s "
        "WHERE name = %s AND next_at = %s",
        (next_at, fired_at, run_id, time.time(), name, expected),
    )
    return cur.rowcount == 1
