"""SQLite statements of the upper layers: the observe layer's reports and spend sums, and the
trust layer's gated actions and ring changes (the engine's are in `sqlite_sql`)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
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
from tether.store.sqlite_sql import (
    RUN_COLUMNS,
    dumps,
    loads,
    run_from_row,
    send_signal,
    step_from_row,
)

# --- observe layer -------------------------------------------------------------------------------


# Runs active in a window: finished inside it (runs_finished index) or not finished yet (the
# status indexes). Two indexed branches instead of an OR that would scan every run.
_WINDOW_RUNS = (
    "SELECT {cols} FROM runs WHERE finished_at >= ? AND created_at < ? "
    "UNION ALL SELECT {cols} FROM runs WHERE status IN ('queued', 'running', 'waiting') "
    "AND created_at < ?"
)


def load_window(
    conn: sqlite3.Connection, since: float, until: float | None
) -> list[tuple[RunRecord, list[StepRecord]]]:
    until = time.time() if until is None else until
    window = (since, until, until)
    runs = sorted(
        (run_from_row(row) for row in conn.execute(_WINDOW_RUNS.format(cols=RUN_COLUMNS), window)),
        key=lambda run: (run.created_at, run.id),
    )
    journals: dict[str, list[StepRecord]] = {run.id: [] for run in runs}
    # Reports never read step inputs and outputs (model responses can be large): left out.
    rows = conn.execute(
        "SELECT s.run_id, s.seq, s.name, s.kind, s.status, NULL, NULL, s.error, s.attempts, "
        "s.started_at, s.finished_at, s.wake_at, s.usage, s.meta "
        f"FROM ({_WINDOW_RUNS.format(cols='id')}) w "
        "JOIN steps s ON s.run_id = w.id ORDER BY s.run_id, s.seq",
        window,
    )
    for row in rows:
        journal = journals.get(row[0])
        if journal is not None:  # a run created between the two reads is left out
            journal.append(step_from_row(row))
    return [(run, journals[run.id]) for run in runs]


def label_spend(
    conn: sqlite3.Connection, key: str, value: str, since: float
) -> tuple[float, int]:
    row = conn.execute(
        "SELECT coalesce(sum(json_extract(s.usage, '$.cost_usd')), 0), "
        "coalesce(sum(json_extract(s.usage, '$.unpriced_calls')), 0) "
        "FROM (SELECT id, labels FROM runs WHERE finished_at >= ? UNION ALL "
        "SELECT id, labels FROM runs WHERE status IN ('queued', 'running', 'waiting')) r "
        "JOIN steps s ON s.run_id = r.id "
        "WHERE json_extract(r.labels, ?) = ? AND s.usage IS NOT NULL AND s.finished_at >= ?",
        (since, f'$."{key}"', value, since),
    ).fetchone()
    return float(row[0]), int(row[1])


_RESERVATION_DEAD = (
    "NOT EXISTS (SELECT 1 FROM runs u WHERE u.id = spend_reservations.run_id "
    "AND u.fencing = spend_reservations.token AND u.status = 'running' AND u.lease_expires > ?)"
)
_HOLDER_HOLDS = (
    "EXISTS (SELECT 1 FROM runs u WHERE u.id = spend_reservations.run_id "
    "AND u.fencing = spend_reservations.token AND u.status = 'running')"
)
_SPEND_TOLERANCE = 1e-12
"""Float noise: a reservation that fits exactly must not be refused for a rounding error."""


def reserve_spend(
    conn: sqlite3.Connection,
    run_id: str,
    token: int,
    reservation_id: str,
    cost_usd: float,
    windows: Sequence[SpendWindow],
) -> SpendVerdict | None:
    # Runs inside the store's BEGIN IMMEDIATE: no other process writes until it commits, so the
    # sums below and the insert are one atomic decision across every worker on the file.
    now = time.time()
    keys = sorted({w.key for w in windows})
    marks = ",".join("?" * len(keys))
    # A dead holder's reservation is a call that may have been sent and billed: it counts as
    # spent when it was made, and is forgotten only once it is older than every window here.
    conn.execute(
        f"DELETE FROM spend_reservations WHERE limit_key IN ({marks}) AND created_at < ? "
        f"AND {_RESERVATION_DEAD}",
        (*keys, min(w.since for w in windows), now),
    )
    if conn.execute(
        "SELECT 1 FROM spend_reservations WHERE id = ? LIMIT 1", (reservation_id,)
    ).fetchone():
        return None
    for window in windows:
        spent, unpriced = label_spend(conn, window.label, window.value, window.since)
        reserved = float(conn.execute(
            "SELECT coalesce(sum(cost_usd), 0) FROM spend_reservations WHERE limit_key = ? "
            f"AND (created_at >= ? OR NOT {_RESERVATION_DEAD})",
            (window.key, window.since, now),
        ).fetchone()[0])
        if spent + reserved + cost_usd > window.max_usd + _SPEND_TOLERANCE:
            return SpendVerdict(window, spent, reserved, unpriced)
    conn.executemany(
        "INSERT INTO spend_reservations (limit_key, id, run_id, token, cost_usd, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(key, reservation_id, run_id, token, cost_usd, now) for key in keys],
    )
    return None


def hold_usage(
    conn: sqlite3.Connection, run_id: str, token: int, hold_id: str, usage: str
) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO run_holds (id, run_id, token, usage, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (hold_id, run_id, token, usage, time.time()),
    )


def release_hold(conn: sqlite3.Connection, hold_id: str) -> None:
    conn.execute(
        "DELETE FROM run_holds WHERE id = ? AND EXISTS (SELECT 1 FROM runs u "
        "WHERE u.id = run_holds.run_id AND u.fencing = run_holds.token AND u.status = 'running')",
        (hold_id,),
    )


def lost_holds(conn: sqlite3.Connection, run_id: str, token: int) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT usage FROM run_holds WHERE run_id = ? AND token <> ? ORDER BY created_at",
        (run_id, token),
    )]


# A call an earlier holder left in flight: its row's token is not the run's fencing token now.
# A spend reservation is one row per limit key (one call): grouped by its id, and left out
# when the run's hold (the whole usage, not just the cost) lists the call.
_CUT_CALLS = (
    "SELECT h.id, h.run_id, h.token, h.usage, h.created_at FROM run_holds h "
    "WHERE {where} AND h.token <> (SELECT u.fencing FROM runs u WHERE u.id = h.run_id) "
    "UNION ALL SELECT h.id, h.run_id, h.token, "
    "json_object('llm_calls', 1, 'cost_usd', max(h.cost_usd)), min(h.created_at) "
    "FROM spend_reservations h "
    "WHERE {where} AND h.token <> (SELECT u.fencing FROM runs u WHERE u.id = h.run_id) "
    "AND NOT EXISTS (SELECT 1 FROM run_holds o WHERE o.id = h.id) "
    "GROUP BY h.id, h.run_id, h.token ORDER BY 5, 1"
)


def cut_calls(
    conn: sqlite3.Connection, run_id: str | None, since: float, until: float | None
) -> list[CutCall]:
    where = "h.created_at >= ? AND h.created_at < ?"
    bounds: tuple[Any, ...] = (since, time.time() if until is None else until)
    if run_id is not None:
        where += " AND h.run_id = ?"
        bounds += (run_id,)
    rows = conn.execute(_CUT_CALLS.format(where=where), bounds + bounds)
    return [cut_call(r[0], r[1], r[2], loads(r[3]), r[4]) for r in rows]


def release_spend(conn: sqlite3.Connection, reservation_id: str) -> None:
    # Only by the run's holder: a worker that lost the run meanwhile (paused, cut off) may
    # have had its call billed though its journal write was refused, so its hold stays spent.
    conn.execute(f"DELETE FROM spend_reservations WHERE id = ? AND {_HOLDER_HOLDS}",
                 (reservation_id,))


# --- trust layer -------------------------------------------------------------------------------

_ACTION_COLUMNS = (
    "id, run_id, seq, workflow, agent, tool, category, ring, status, args, digest, created_at, "
    "args_schema, checks, context, reviewers, started_by, call_id, reason, expires_at, "
    "decided_by, decided_at, final_args, final_digest, edited, outcome"
)
_ACTION_JSON = frozenset({9, 12, 13, 14, 15, 22})
"""Positions of JSON-encoded columns in `_ACTION_COLUMNS`."""


def action_from_row(row: Sequence[Any]) -> TrustActionRecord:
    values = [loads(v) if i in _ACTION_JSON else v for i, v in enumerate(row)]
    values[24] = bool(values[24])
    return TrustActionRecord(*values)


def action_params(action: TrustActionRecord) -> tuple[Any, ...]:
    values = (
        action.id, action.run_id, action.seq, action.workflow, action.agent, action.tool,
        action.category, action.ring, action.status, action.args, action.digest,
        action.created_at, action.args_schema, action.checks, action.context, action.reviewers,
        action.started_by, action.call_id, action.reason, action.expires_at, action.decided_by,
        action.decided_at, action.final_args, action.final_digest, int(action.edited),
        action.outcome,
    )
    return tuple(dumps(v) if i in _ACTION_JSON else v for i, v in enumerate(values))


def get_trust_action(conn: sqlite3.Connection, action_id: str) -> TrustActionRecord | None:
    row = conn.execute(
        f"SELECT {_ACTION_COLUMNS} FROM trust_actions WHERE id = ?", (action_id,)
    ).fetchone()
    return None if row is None else action_from_row(row)


def put_trust_action(conn: sqlite3.Connection, action: TrustActionRecord) -> TrustActionRecord:
    marks = ", ".join("?" * len(_ACTION_COLUMNS.split(",")))
    conn.execute(
        f"INSERT INTO trust_actions ({_ACTION_COLUMNS}) VALUES ({marks}) "
        "ON CONFLICT (id) DO NOTHING",
        action_params(action),
    )
    stored = get_trust_action(conn, action.id)
    assert stored is not None
    return stored


def list_trust_actions(
    conn: sqlite3.Connection,
    filters: tuple[tuple[str, str | None], ...],
    since: float | None,
    limit: int,
) -> list[TrustActionRecord]:
    where: list[str] = []
    params: list[Any] = []
    for column, value in filters:  # column names are fixed by the caller, values bound
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("created_at >= ?")
        params.append(since)
    sql = f"SELECT {_ACTION_COLUMNS} FROM trust_actions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
    params.append(limit)
    return [action_from_row(row) for row in conn.execute(sql, params)]


def decide_trust_action(
    conn: sqlite3.Connection,
    action_id: str,
    decision: tuple[Any, ...],
    signal: tuple[str, Any] | None,
) -> TrustActionRecord | None:
    status, decided_by, decided_at, final_args, final_digest, edited, reason = decision
    changed = conn.execute(
        "UPDATE trust_actions SET status = ?, decided_by = ?, decided_at = ?, final_args = ?, "
        "final_digest = ?, edited = ?, reason = coalesce(?, reason) "
        "WHERE id = ? AND status = 'pending'",
        (status, decided_by, decided_at, dumps(final_args), final_digest, int(edited), reason,
         action_id),
    ).rowcount
    if not changed:
        return None
    action = get_trust_action(conn, action_id)
    assert action is not None
    if signal is not None:
        send_signal(conn, action.run_id, signal[0], signal[1])
    return action


def set_trust_outcome(conn: sqlite3.Connection, action_id: str, outcome: str) -> None:
    conn.execute("UPDATE trust_actions SET outcome = ? WHERE id = ?", (outcome, action_id))


def add_ring_change(conn: sqlite3.Connection, change: RingChangeRecord) -> RingChangeRecord:
    row = conn.execute(
        "INSERT INTO trust_ring_changes (agent, category, from_ring, to_ring, reason, evidence, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (change.agent, change.category, change.from_ring, change.to_ring, change.reason,
         dumps(change.evidence), change.created_at),
    ).fetchone()
    return RingChangeRecord(
        agent=change.agent, category=change.category, from_ring=change.from_ring,
        to_ring=change.to_ring, reason=change.reason, evidence=change.evidence,
        created_at=change.created_at, id=row[0],
    )


def list_ring_changes(
    conn: sqlite3.Connection, agent: str | None, category: str | None
) -> list[RingChangeRecord]:
    where: list[str] = []
    params: list[Any] = []
    if agent is not None:
        where.append("agent = ?")
        params.append(agent)
    if category is not None:
        where.append("category = ?")
        params.append(category)
    sql = (
        "SELECT agent, category, from_ring, to_ring, reason, evidence, created_at, id "
        "FROM trust_ring_changes"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id"
    return [
        RingChangeRecord(r[0], r[1], r[2], r[3], r[4], loads(r[5]), r[6], r[7])
        for r in conn.execute(sql, params)
    ]
