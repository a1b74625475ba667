"""The alerts table and the metric figures, in both dialects (the `Store` methods call these).

One module for both dialects because the statements are few and alike: SQLite functions take
a `sqlite3.Connection` (writes run inside the store's ``BEGIN IMMEDIATE`` batch, so a
check-then-insert is atomic), PostgreSQL ones (``pg_*``) an async psycopg connection.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, LiteralString

from tether.store.base import AlertRecord, NewAlert

if TYPE_CHECKING:  # psycopg is optional: SQLite users never import it
    from tether.store.postgres_sql import Conn

_COLUMNS = (
    "id, key, series, kind, subject, summary, details, created_at, state, attempts, "
    "next_attempt_at, lease_owner, lease_expires, last_error, delivered_at"
)
_A_COLUMNS = (
    "a.id, a.key, a.series, a.kind, a.subject, a.summary, a.details, a.created_at, a.state, "
    "a.attempts, a.next_attempt_at, a.lease_owner, a.lease_expires, a.last_error, "
    "a.delivered_at"
)
_INSERT_COLUMNS = (
    "id, key, series, kind, subject, summary, details, created_at, state, attempts, "
    "next_attempt_at"
)
_DUE = (
    "state = 'pending' AND next_attempt_at <= {p} AND (lease_expires IS NULL OR lease_expires < {p})"
)
_SETTLE = (
    "UPDATE alerts SET state = {p}, delivered_at = {p}, last_error = coalesce({p}, last_error), "
    "next_attempt_at = coalesce({p}, next_attempt_at), lease_owner = NULL, lease_expires = NULL "
    "WHERE id = {p} AND lease_owner = {p} AND state = 'pending'"
)
_RUN_COUNTS = "SELECT workflow, status, count(*) FROM runs GROUP BY workflow, status"
# A run became runnable at its timer (a delayed start, a timer that ran out) or, queued with no
# timer ahead, when it was last queued (started, released, woken by a signal).
_BACKLOG = (
    "SELECT queue, count(*), min(CASE WHEN status = 'waiting' THEN wake_at "
    "WHEN wake_at IS NOT NULL AND wake_at > updated_at THEN wake_at ELSE updated_at END) "
    "FROM runs WHERE (status = 'queued' AND (wake_at IS NULL OR wake_at <= {p})) "
    "OR (status = 'waiting' AND wake_at IS NOT NULL AND wake_at <= {p}) GROUP BY queue"
)


def _record(row: Sequence[Any], decode: bool) -> AlertRecord:
    details = row[6]
    if decode and isinstance(details, str):
        details = json.loads(details)
    return AlertRecord(
        id=row[0], key=row[1], series=row[2], kind=row[3], subject=row[4], summary=row[5],
        details=details, created_at=float(row[7]), state=row[8], attempts=int(row[9]),
        next_attempt_at=float(row[10]), lease_owner=row[11], lease_expires=row[12],
        last_error=row[13], delivered_at=row[14],
    )


def _insert_params(alert: NewAlert, now: float) -> tuple[Any, ...]:
    details = None if alert.details is None else json.dumps(alert.details)
    return (alert.id, alert.key, alert.series or alert.key, alert.kind, alert.subject,
            alert.summary, details, now, "pending", 0, now)


def _settle_params(
    alert_id: str, owner: str, delivered: bool, error: str | None, retry_at: float | None
) -> tuple[Any, ...]:
    state = "delivered" if delivered else ("pending" if retry_at is not None else "failed")
    return (state, time.time() if delivered else None, error, retry_at, alert_id, owner)


def _filters(
    kind: str | None, state: str | None, since: float | None, mark: str
) -> tuple[str, list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("kind", kind), ("state", state)):
        if value is not None:
            where.append(f"{column} = {mark}")
            args.append(value)
    if since is not None:
        where.append(f"created_at >= {mark}")
        args.append(since)
    return (" WHERE " + " AND ".join(where)) if where else "", args


# --- SQLite ------------------------------------------------------------------------------------


def record_alert(conn: sqlite3.Connection, alert: NewAlert) -> AlertRecord | None:
    now = time.time()
    if alert.quiet_seconds > 0:
        recent = conn.execute(
            "SELECT 1 FROM alerts WHERE series = ? AND created_at > ? LIMIT 1",
            (alert.series or alert.key, now - alert.quiet_seconds),
        ).fetchone()
        if recent is not None:
            return None
    cur = conn.execute(
        f"INSERT INTO alerts ({_INSERT_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        _insert_params(alert, now),
    )
    if cur.rowcount != 1:
        return None
    row = conn.execute(f"SELECT {_COLUMNS} FROM alerts WHERE id = ?", (alert.id,)).fetchone()
    return _record(row, True)


def claim_alerts(
    conn: sqlite3.Connection, owner: str, limit: int, lease_seconds: float, only: str | None
) -> list[AlertRecord]:
    now = time.time()
    one = "" if only is None else " AND id = ?"
    rows = conn.execute(
        f"UPDATE alerts SET lease_owner = ?, lease_expires = ?, attempts = attempts + 1 "
        f"WHERE id IN (SELECT id FROM alerts WHERE {_DUE.format(p='?')}{one} "
        f"ORDER BY created_at, id LIMIT ?) RETURNING {_COLUMNS}",
        (owner, now + lease_seconds, now, now, *(() if only is None else (only,)), limit),
    ).fetchall()
    return sorted((_record(row, True) for row in rows), key=lambda a: (a.created_at, a.id))


def settle_alert(
    conn: sqlite3.Connection, alert_id: str, owner: str, delivered: bool, error: str | None,
    retry_at: float | None,
) -> bool:
    params = _settle_params(alert_id, owner, delivered, error, retry_at)
    return conn.execute(_SETTLE.format(p="?"), params).rowcount == 1


def list_alerts(
    conn: sqlite3.Connection, kind: str | None, state: str | None, since: float | None,
    limit: int,
) -> list[AlertRecord]:
    where, args = _filters(kind, state, since, "?")
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM alerts{where} ORDER BY created_at DESC, id DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [_record(row, True) for row in rows]


def prune_alerts(conn: sqlite3.Connection, before: float) -> int:
    return conn.execute(
        "DELETE FROM alerts WHERE created_at < ? AND state <> 'pending'", (before,)
    ).rowcount


def run_counts(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
    return [(r[0], r[1], int(r[2])) for r in conn.execute(_RUN_COUNTS).fetchall()]


def queue_backlog(
    conn: sqlite3.Connection, now: float
) -> list[tuple[str | None, int, float | None]]:
    rows = conn.execute(_BACKLOG.format(p="?"), (now, now)).fetchall()
    return [(r[0], int(r[1]), None if r[2] is None else float(r[2])) for r in rows]


# --- PostgreSQL --------------------------------------------------------------------------------


def _series_lock(series: str) -> int:
    digest = hashlib.blake2b(f"tether.alert:{series}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def pg_record_alert(conn: Conn, alert: NewAlert) -> AlertRecord | None:
    """Runs in its own transaction: the series lock serialises detectors of one condition."""
    now = time.time()
    if alert.quiet_seconds > 0:
        series = alert.series or alert.key
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_series_lock(series),))
        cur = await conn.execute(
            "SELECT 1 FROM alerts WHERE series = %s AND created_at > %s LIMIT 1",
            (series, now - alert.quiet_seconds),
        )
        if await cur.fetchone() is not None:
            return None
    cur = await conn.execute(
        f"INSERT INTO alerts ({_INSERT_COLUMNS}) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s) ON CONFLICT DO NOTHING "
        f"RETURNING {_COLUMNS}",
        _insert_params(alert, now),
    )
    row = await cur.fetchone()
    return None if row is None else _record(row, False)


async def pg_claim_alerts(
    conn: Conn, owner: str, limit: int, lease_seconds: float, only: str | None
) -> list[AlertRecord]:
    now = time.time()
    due: LiteralString = _DUE.format(p="%s") + ("" if only is None else " AND id = %s")  # type: ignore[assignment]
    # A CTE, not ``id IN (subquery)``: the planner may run an IN subquery once per row, and
    # then its LIMIT no longer bounds the claim.
    cur = await conn.execute(
        f"WITH picked AS (SELECT id FROM alerts WHERE {due} ORDER BY created_at, id LIMIT %s "
        "FOR UPDATE SKIP LOCKED) "
        "UPDATE alerts a SET lease_owner = %s, lease_expires = %s, attempts = a.attempts + 1 "
        f"FROM picked WHERE a.id = picked.id RETURNING {_A_COLUMNS}",
        (now, now, *(() if only is None else (only,)), limit, owner, now + lease_seconds),
    )
    rows = await cur.fetchall()
    return sorted((_record(row, False) for row in rows), key=lambda a: (a.created_at, a.id))


async def pg_settle_alert(
    conn: Conn, alert_id: str, owner: str, delivered: bool, error: str | None,
    retry_at: float | None,
) -> bool:
    statement: LiteralString = _SETTLE.format(p="%s")  # type: ignore[assignment]
    cur = await conn.execute(statement, _settle_params(alert_id, owner, delivered, error, retry_at))
    return cur.rowcount == 1


async def pg_list_alerts(
    conn: Conn, kind: str | None, state: str | None, since: float | None, limit: int
) -> list[AlertRecord]:
    where, args = _filters(kind, state, since, "%s")
    query: LiteralString = (
        f"SELECT {_COLUMNS} FROM alerts{where} ORDER BY created_at DESC, id DESC LIMIT %s"  # type: ignore[assignment]
    )
    cur = await conn.execute(query, (*args, limit))
    return [_record(row, False) for row in await cur.fetchall()]


async def pg_prune_alerts(conn: Conn, before: float) -> int:
    cur = await conn.execute(
        "DELETE FROM alerts WHERE created_at < %s AND state <> 'pending'", (before,)
    )
    return cur.rowcount


async def pg_run_counts(conn: Conn) -> list[tuple[str, str, int]]:
    cur = await conn.execute(_RUN_COUNTS)
    return [(r[0], r[1], int(r[2])) for r in await cur.fetchall()]


async def pg_queue_backlog(conn: Conn, now: float) -> list[tuple[str | None, int, float | None]]:
    query: LiteralString = _BACKLOG.format(p="%s")  # type: ignore[assignment]
    cur = await conn.execute(query, (now, now))
    return [(r[0], int(r[1]), None if r[2] is None else float(r[2])) for r in await cur.fetchall()]
