"""PostgreSQL statements of the upper layers: the observe layer's reports and spend sums, and
the trust layer's gated actions and ring changes (the engine's are in `postgres_sql`)."""


from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tether.store.base import (
    CutCall,
    RingChangeRecord,
    RunRecord,
    SpendVerdict,
    SpendWindow,
    StepRecord,
    TrustActionRecord,
    cut_call,
)
from tether.store.postgres_sql import (
    NOW,
    RUN_COLUMNS,
    Conn,
    Outcome,
    dumps,
    loads,
    run_from_row,
    send_signal,
    step_from_row,
)

# --- observe layer -------------------------------------------------------------------------------


# Runs active in a window: finished inside it (runs_finished index) or not finished yet (the
# status index). Two indexed branches instead of an OR that would scan every run.
_WINDOW_IDS = (
    "SELECT id FROM runs WHERE finished_at >= %s AND created_at < %s "
    "UNION ALL SELECT id FROM runs WHERE status IN ('queued', 'running', 'waiting') "
    "AND created_at < %s"
)


async def load_window(
    conn: Conn, since: float, until: float | None
) -> list[tuple[RunRecord, list[StepRecord]]]:
    if until is None:
        cur = await conn.execute(f"SELECT {NOW}")
        row = await cur.fetchone()
        until = float(row[0]) if row else 0.0
    window = (since, until, until)
    # One snapshot for both reads, so every run comes with its whole journal.
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur = await conn.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE id IN ({_WINDOW_IDS}) ORDER BY created_at, id",
            window,
        )
        runs = [run_from_row(row) for row in await cur.fetchall()]
        # Reports never read step inputs and outputs (model responses can be large): left out.
        cur = await conn.execute(
            "SELECT s.run_id, s.seq, s.name, s.kind, s.status, NULL, NULL, s.error, s.attempts, "
            "s.started_at, s.finished_at, s.wake_at, s.usage, s.meta "
            f"FROM steps s WHERE s.run_id IN ({_WINDOW_IDS}) ORDER BY s.run_id, s.seq",
            window,
        )
        rows = await cur.fetchall()
    journals: dict[str, list[StepRecord]] = {run.id: [] for run in runs}
    for row in rows:
        journal = journals.get(row[0])
        if journal is not None:
            journal.append(step_from_row(row))
    return [(run, journals[run.id]) for run in runs]


_LABEL_SPENT = (
    "SELECT coalesce(sum((s.usage::jsonb ->> 'cost_usd')::float8), 0) AS cost, "
    "coalesce(sum((s.usage::jsonb ->> 'unpriced_calls')::bigint), 0) AS unpriced "
    "FROM (SELECT id, labels FROM runs WHERE finished_at >= %s UNION ALL "
    "SELECT id, labels FROM runs WHERE status IN ('queued', 'running', 'waiting')) r "
    "JOIN steps s ON s.run_id = r.id "
    "WHERE r.labels ->> %s = %s AND s.usage IS NOT NULL AND s.finished_at >= %s"
)


async def label_spend(conn: Conn, key: str, value: str, since: float) -> tuple[float, int]:
    cur = await conn.execute(_LABEL_SPENT, (since, key, value, since))
    row = await cur.fetchone()
    return (float(row[0]), int(row[1])) if row else (0.0, 0)


# --- spend reservations (store/base.py, "Reservations") ------------------------------------------

_SPEND_TOLERANCE = 1e-12
"""Float noise: a reservation that fits exactly must not be refused for a rounding error."""

# The journaled spend and the open reservations in ONE statement, so one snapshot: a call that
# settles meanwhile (journal entry committed, then its reservation deleted) is seen either
# reserved, or journaled, or both, never neither.
_LIVE = f"""EXISTS (SELECT 1 FROM runs u WHERE u.id = r.run_id AND u.fencing = r.token
                     AND u.status = 'running' AND u.lease_expires > {NOW})"""
"""A reservation's holder still holds its run: the call is in flight."""

# A dead holder's reservation is a call that may have been sent and billed: it counts as spent
# when it was made (`created_at` inside the window), and is forgotten only once it is older
# than every window checked.
_WINDOW_FIGURES = f"""
SELECT j.cost, j.unpriced,
       (SELECT coalesce(sum(cost_usd), 0) FROM spend_reservations r
         WHERE r.limit_key = %s AND (r.created_at >= %s OR {_LIVE}))
  FROM ({_LABEL_SPENT}) j
"""

_FORGET_DEAD = f"""
DELETE FROM spend_reservations r
 WHERE r.limit_key = ANY(%b::text[]) AND r.created_at < %s AND NOT {_LIVE}
"""


def spend_lock_id(key: str) -> int:
    """The advisory lock of one limit key (a signed 64-bit hash; advisory locks are per
    database, so schemas sharing one only ever serialise a little more)."""
    digest = hashlib.blake2b(f"tether.spend:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def reserve_spend(
    conn: Conn,
    run_id: str,
    token: int,
    reservation_id: str,
    cost_usd: float,
    windows: Sequence[SpendWindow],
) -> SpendVerdict | None:
    """Runs in its own transaction (see `PostgresStore.reserve_spend`)."""
    keys = sorted({w.key for w in windows})
    # Concurrent reservers of a key queue here until the holder commits; locks are taken in
    # one order so two calls under two shared limits cannot wait on each other in a cycle.
    for lock in sorted(spend_lock_id(k) for k in keys):
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
    await conn.execute(_FORGET_DEAD, (keys, min(w.since for w in windows)))
    cur = await conn.execute(
        "SELECT 1 FROM spend_reservations WHERE id = %s LIMIT 1", (reservation_id,)
    )
    if await cur.fetchone():  # a retry whose first attempt committed
        return None
    for window in windows:
        cur = await conn.execute(
            _WINDOW_FIGURES,
            (window.key, window.since, window.since, window.label, window.value, window.since),
        )
        row = await cur.fetchone()
        spent, unpriced, reserved = (
            (float(row[0]), int(row[1]), float(row[2])) if row else (0.0, 0, 0.0)
        )
        if spent + reserved + cost_usd > window.max_usd + _SPEND_TOLERANCE:
            return SpendVerdict(window, spent, reserved, unpriced)
    await conn.execute(
        f"INSERT INTO spend_reservations (limit_key, id, run_id, token, cost_usd, created_at) "
        f"SELECT k, %s, %s, %s, %s, {NOW} FROM unnest(%b::text[]) AS k "
        "ON CONFLICT DO NOTHING",
        (reservation_id, run_id, token, cost_usd, keys),
    )
    return None


async def hold_usage(conn: Conn, run_id: str, token: int, hold_id: str, usage: str) -> None:
    await conn.execute(
        f"INSERT INTO run_holds (id, run_id, token, usage, created_at) "
        f"VALUES (%s, %s, %s, %s, {NOW}) ON CONFLICT DO NOTHING",
        (hold_id, run_id, token, usage),
    )


async def release_hold(conn: Conn, hold_id: str) -> None:
    await conn.execute(
        "DELETE FROM run_holds h WHERE h.id = %s AND EXISTS (SELECT 1 FROM runs u "
        "WHERE u.id = h.run_id AND u.fencing = h.token AND u.status = 'running')",
        (hold_id,),
    )


async def lost_holds(conn: Conn, run_id: str, token: int) -> list[str]:
    cur = await conn.execute(
        "SELECT usage FROM run_holds WHERE run_id = %s AND token <> %s ORDER BY created_at",
        (run_id, token),
    )
    return [r[0] for r in await cur.fetchall()]


# As in sqlite_layers_sql: rows whose token is not the run's fencing token now, a spend
# reservation (one row per limit key) once, and not when the run's hold lists the call.
_CUT_CALLS = (
    "SELECT h.id, h.run_id, h.token, h.usage, h.created_at FROM run_holds h "
    "WHERE {where} AND h.token <> (SELECT u.fencing FROM runs u WHERE u.id = h.run_id) "
    "UNION ALL SELECT h.id, h.run_id, h.token, "
    "json_build_object('llm_calls', 1, 'cost_usd', max(h.cost_usd))::text, min(h.created_at) "
    "FROM spend_reservations h "
    "WHERE {where} AND h.token <> (SELECT u.fencing FROM runs u WHERE u.id = h.run_id) "
    "AND NOT EXISTS (SELECT 1 FROM run_holds o WHERE o.id = h.id) "
    "GROUP BY h.id, h.run_id, h.token ORDER BY 5, 1"
)


async def cut_calls(
    conn: Conn, run_id: str | None, since: float, until: float | None
) -> list[CutCall]:
    where = f"h.created_at >= %s AND h.created_at < coalesce(%s, {NOW})"
    bounds: tuple[Any, ...] = (since, until)
    if run_id is not None:
        where += " AND h.run_id = %s"
        bounds += (run_id,)
    cur = await conn.execute(_CUT_CALLS.format(where=where), bounds + bounds)
    return [cut_call(r[0], r[1], r[2], loads(r[3]), r[4]) for r in await cur.fetchall()]


async def release_spend(conn: Conn, reservation_id: str) -> None:
    # Only by the run's holder: a worker that lost the run meanwhile (paused, cut off) may
    # have had its call billed though its journal write was refused, so its hold stays spent.
    await conn.execute(
        "DELETE FROM spend_reservations r WHERE r.id = %s AND EXISTS (SELECT 1 FROM runs u "
        "WHERE u.id = r.run_id AND u.fencing = r.token AND u.status = 'running')",
        (reservation_id,))


# --- trust layer ---------------------------------------------------------------------------------

ACTION_COLUMNS = (
    "id, run_id, seq, workflow, agent, tool, category, ring, status, args, digest, created_at, "
    "args_schema, checks, context, reviewers, started_by, call_id, reason, expires_at, "
    "decided_by, decided_at, final_args, final_digest, edited, outcome"
)
_ACTION_JSON = frozenset({9, 12, 13, 14, 15, 22})
"""Positions of JSON-encoded columns in `ACTION_COLUMNS`."""


def action_from_row(row: Sequence[Any]) -> TrustActionRecord:
    values = [loads(v) if i in _ACTION_JSON else v for i, v in enumerate(row)]
    return TrustActionRecord(*values)


def _action_params(action: TrustActionRecord) -> tuple[Any, ...]:
    values = (
        action.id, action.run_id, action.seq, action.workflow, action.agent, action.tool,
        action.category, action.ring, action.status, action.args, action.digest,
        action.created_at, action.args_schema, action.checks, action.context, action.reviewers,
        action.started_by, action.call_id, action.reason, action.expires_at, action.decided_by,
        action.decided_at, action.final_args, action.final_digest, action.edited,
        action.outcome,
    )
    return tuple(dumps(v) if i in _ACTION_JSON else v for i, v in enumerate(values))


async def get_trust_action(conn: Conn, action_id: str) -> TrustActionRecord | None:
    cur = await conn.execute(
        f"SELECT {ACTION_COLUMNS} FROM trust_actions WHERE id = %s", (action_id,)
    )
    row = await cur.fetchone()
    return None if row is None else action_from_row(row)


async def put_trust_action(conn: Conn, action: TrustActionRecord) -> Outcome:
    marks = ", ".join(["%s"] * len(ACTION_COLUMNS.split(",")))
    await conn.execute(
        f"INSERT INTO trust_actions ({ACTION_COLUMNS}) VALUES ({marks}) "
        "ON CONFLICT (id) DO NOTHING".encode(),  # composed from fixed fragments only
        _action_params(action),
    )
    return await get_trust_action(conn, action.id), False


async def list_trust_actions(
    conn: Conn,
    filters: tuple[tuple[str, str | None], ...],
    since: float | None,
    limit: int,
) -> list[TrustActionRecord]:
    where: list[str] = []
    params: list[Any] = []
    for column, value in filters:  # column names are fixed by the caller, values bound
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if since is not None:
        where.append("created_at >= %s")
        params.append(since)
    text = f"SELECT {ACTION_COLUMNS} FROM trust_actions"
    if where:
        text += " WHERE " + " AND ".join(where)
    text += " ORDER BY created_at DESC, id DESC LIMIT %s"
    params.append(limit)
    cur = await conn.execute(text.encode(), params)  # composed from fixed fragments only
    return [action_from_row(row) for row in await cur.fetchall()]


async def decide_trust_action(
    conn: Conn, action_id: str, decision: tuple[Any, ...], signal: tuple[str, Any] | None
) -> Outcome:
    status, decided_by, decided_at, final_args, final_digest, edited, reason = decision
    cur = await conn.execute(
        "UPDATE trust_actions SET status = %s, decided_by = %s, decided_at = %s, "
        "final_args = %s, final_digest = %s, edited = %s, reason = coalesce(%s, reason) "
        "WHERE id = %s AND status = 'pending' RETURNING run_id",
        (status, decided_by, decided_at, dumps(final_args), final_digest, edited, reason,
         action_id),
    )
    row = await cur.fetchone()
    action = await get_trust_action(conn, action_id)
    if row is None:
        # A retry after a lost connection whose first attempt committed: same decision, same
        # instant — report it as done, without sending the signal twice.
        mine = (
            action is not None and action.status == status
            and action.decided_by == decided_by and action.decided_at == decided_at
        )
        return (action if mine else None), False
    woke = False
    if signal is not None and action is not None:
        _, woke = await send_signal(conn, action.run_id, signal[0], signal[1])
    return action, woke


async def set_trust_outcome(conn: Conn, action_id: str, outcome: str) -> Outcome:
    await conn.execute(
        "UPDATE trust_actions SET outcome = %s WHERE id = %s", (outcome, action_id)
    )
    return None, False


async def add_ring_change(conn: Conn, change: RingChangeRecord) -> Outcome:
    # Idempotent under a retried transaction: the same change at the same instant is one row.
    cur = await conn.execute(
        "SELECT id FROM trust_ring_changes WHERE agent = %s AND category = %s AND to_ring = %s "
        "AND created_at = %s",
        (change.agent, change.category, change.to_ring, change.created_at),
    )
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute(
            "INSERT INTO trust_ring_changes (agent, category, from_ring, to_ring, reason, "
            "evidence, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (change.agent, change.category, change.from_ring, change.to_ring, change.reason,
             dumps(change.evidence), change.created_at),
        )
        row = await cur.fetchone()
    assert row is not None
    return replace(change, id=row[0]), False


async def list_ring_changes(
    conn: Conn, agent: str | None, category: str | None
) -> list[RingChangeRecord]:
    where: list[str] = []
    params: list[Any] = []
    if agent is not None:
        where.append("agent = %s")
        params.append(agent)
    if category is not None:
        where.append("category = %s")
        params.append(category)
    text = (
        "SELECT agent, category, from_ring, to_ring, reason, evidence, created_at, id "
        "FROM trust_ring_changes"
    )
    if where:
        text += " WHERE " + " AND ".join(where)
    text += " ORDER BY id"
    cur = await conn.execute(text.encode(), params)  # composed from fixed fragments only
    return [
        RingChangeRecord(r[0], r[1], r[2], r[3], r[4], loads(r[5]), r[6], r[7])
        for r in await cur.fetchall()
    ]
