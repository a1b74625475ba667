"""The statements of the run event stream, for both dialects (`run_events`, migration 0013).

Appends ignore an event whose `key` is already stored: emitting an event twice (a replay
after a takeover emits again what it replays) stores it once, at its first position.

On both stores a step's own events are not rows of ``run_events``: the step's final journal row
(completed or failed) carries a position in the stream (``ev_pos``, migration 0024), taken
from the same id counter in the journal write's transaction, and the reader derives
``step_started`` (at ``ev_pos - 1``, unless that event was appended while the step ran) and
``step_completed``/``step_failed`` (at ``ev_pos``) from it. The stream is the same as if
they had been appended at that moment, and a step costs the journal write alone. A start
that *was* appended (the step ran a while; or it ran on a worker that died, and ran again)
stays where it was: the derived one is not read, as a keyed event is stored once.
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


STEP_EVENT_META = ("gen_ai.operation.name", "gen_ai.tool.name", "gen_ai.request.model",
                   "gen_ai.response.model", "tether.node", "gen_ai.tool.call.id")
"""The journal attributes copied into step events (what the step was: a model call, a tool)."""


def step_event_data(
    name: str, kind: str, attempts: int, meta: dict[str, Any] | None,
    error: dict[str, Any] | None,
) -> dict[str, Any]:
    """The data of a step's event: what the step is, and its error when it failed."""
    data: dict[str, Any] = {"name": name, "kind": kind, "attempts": attempts}
    if meta:
        for field_name in STEP_EVENT_META:
            value = meta.get(field_name)
            if value is not None:
                data[field_name] = value
    if error:
        data["error"] = {"type": error.get("type"), "message": error.get("message")}
    return data


# --- SQLite ----------------------------------------------------------------------------------------


def sqlite_append(conn: sqlite3.Connection, events: Sequence[NewRunEvent]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO run_events (run_id, kind, at, seq, data, key) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(e.run_id, e.kind, e.at, e.seq, None if e.data is None else _dumps(e.data),
          e.key) for e in events],
    )


_SQLITE_READ = """
SELECT id, kind, at, seq, data, NULL, NULL, NULL, NULL FROM run_events
 WHERE run_id = ? AND id > ?
UNION ALL
SELECT ev_pos - 1, 'step_started', started_at, seq, NULL, name, kind, attempts, meta FROM steps
 WHERE run_id = ? AND ev_pos > ? + 1
   AND NOT EXISTS (SELECT 1 FROM run_events WHERE key = steps.run_id || ':' || steps.seq || ':started')
UNION ALL
SELECT ev_pos, 'step_' || status, finished_at, seq, error, name, kind, attempts, meta FROM steps
 WHERE run_id = ? AND ev_pos > ?
ORDER BY 1 LIMIT ?
"""


def sqlite_read(
    conn: sqlite3.Connection, run_id: str, after: int, limit: int
) -> list[RunEventRecord]:
    # Plain ? marks (numbered ones with a sequence are an error from Python 3.14 on).
    return _records(
        run_id, conn.execute(_SQLITE_READ, (run_id, after, run_id, after, run_id, after, limit))
    )


def _records(run_id: str, rows: Any) -> list[RunEventRecord]:
    """Events from the rows of `_SQLITE_READ` or `_POSTGRES_READ`: a row of run_events, or an
    event derived from a journal row."""
    events: list[RunEventRecord] = []
    for pos, kind, at, seq, data, name, step_kind, attempts, meta in rows:
        if name is None:  # a row of run_events
            value = None if data is None else json.loads(data)
        else:  # derived from a journal row; `data` is the step's error
            value = step_event_data(
                name, step_kind, attempts, None if meta is None else json.loads(meta),
                None if data is None else json.loads(data) if kind == "step_failed" else None,
            )
        events.append(RunEventRecord(id=int(pos), run_id=run_id, kind=kind, at=float(at or 0.0),
                                     seq=None if seq is None else int(seq), data=value))
    return events


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
    statement, see `tether.store.postgres_journal_sql`)."""
    return (
        [e.run_id for e in events],
        [e.kind for e in events],
        [e.at for e in events],
        [e.seq for e in events],
        [_dumps(e.data) for e in events],
        [e.key for e in events],
    )


POSTGRES_APPEND_ONE = """
INSERT INTO run_events (run_id, kind, at, seq, data, key) VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (key) DO NOTHING
"""
"""`POSTGRES_APPEND` for one event, its parameters scalars (`postgres_one`)."""


def postgres_one(event: NewRunEvent) -> tuple[Any, ...]:
    """The parameters of `POSTGRES_APPEND_ONE`."""
    return (event.run_id, event.kind, event.at, event.seq, _dumps(event.data), event.key)


async def postgres_append(conn: Conn, events: Sequence[NewRunEvent]) -> None:
    await conn.execute(POSTGRES_APPEND, postgres_params(events))


# As `_SQLITE_READ`: a step's derived events are read from its journal row, which the
# journal's primary key finds by run.
_POSTGRES_READ = """
SELECT id, kind, at, seq, data, NULL, NULL, NULL, NULL FROM run_events
 WHERE run_id = %(run)s AND id > %(after)s
UNION ALL
SELECT ev_pos - 1, 'step_started', started_at, seq, NULL, name, kind, attempts, meta FROM steps
 WHERE run_id = %(run)s AND ev_pos > %(after)s + 1
   AND NOT EXISTS (SELECT 1 FROM run_events
                    WHERE key = steps.run_id || ':' || steps.seq || ':started')
UNION ALL
SELECT ev_pos, 'step_' || status, finished_at, seq, error, name, kind, attempts, meta FROM steps
 WHERE run_id = %(run)s AND ev_pos > %(after)s
ORDER BY 1 LIMIT %(limit)s
"""


async def postgres_read(conn: Conn, run_id: str, after: int, limit: int) -> list[RunEventRecord]:
    cur = await conn.execute(_POSTGRES_READ, {"run": run_id, "after": after, "limit": limit})
    return _records(run_id, await cur.fetchall())
