"""The SQL of the embedded store: one function per store operation, each run on the store's
connection inside the transaction `SQLiteStore` opened for it (see `tether.store.sqlite`).
The upper layers' statements (observe, trust) are in `sqlite_layers_sql`."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from tether.store.base import (
    FINISHED_STATUSES,
    LIVE_MARK,
    Claim,
    Heartbeat,
    NewRun,
    RunRecord,
    SignalRecord,
    StepRecord,
    encode_waiting_for,
    waiting_names,
)
from tether.store.jsontext import dumps, loads

RUN_COLUMNS = (
    "id, workflow, version, status, input, output, error, labels, budget, parent_id, "
    "created_at, updated_at, started_at, finished_at, wake_at, waiting_for, lease_owner, "
    "lease_expires, fencing, recoveries, cancel_requested, progress"
)
_STEP_COLUMNS = (
    "run_id, seq, name, kind, status, input, output, error, attempts, started_at, finished_at, "
    "wake_at, usage, meta"
)
_FINISHED_SQL = "('" + "','".join(sorted(FINISHED_STATUSES)) + "')"
_HELD = "id = ? AND fencing = ? AND status = 'running'"
_HELD_LIVE = _HELD + " AND cancel_requested = 0"




def run_from_row(row: Sequence[Any]) -> RunRecord:
    return RunRecord(
        id=row[0],
        workflow=row[1],
        version=row[2],
        status=row[3],
        input=loads(row[4]),
        output=loads(row[5]),
        error=loads(row[6]),
        labels=loads(row[7]) or {},
        budget=loads(row[8]),
        parent_id=row[9],
        created_at=row[10],
        updated_at=row[11],
        started_at=row[12],
        finished_at=row[13],
        wake_at=row[14],
        waiting_for=row[15],
        lease_owner=row[16],
        lease_expires=row[17],
        fencing=row[18],
        recoveries=row[19],
        cancel_requested=bool(row[20]),
        progress=loads(row[21]),
    )


def step_from_row(row: Sequence[Any]) -> StepRecord:
    return StepRecord(
        run_id=row[0],
        seq=row[1],
        name=row[2],
        kind=row[3],
        status=row[4],
        input=loads(row[5]),
        output=loads(row[6]),
        error=loads(row[7]),
        attempts=row[8],
        started_at=row[9],
        finished_at=row[10],
        wake_at=row[11],
        usage=loads(row[12]),
        meta=loads(row[13]),
    )


def step_params(run_id: str, step: StepRecord) -> tuple[Any, ...]:
    return (
        run_id,
        step.seq,
        step.name,
        step.kind,
        step.status,
        dumps(step.input),
        dumps(step.output),
        dumps(step.error),
        step.attempts,
        step.started_at,
        step.finished_at,
        step.wake_at,
        dumps(step.usage),
        dumps(step.meta),
    )


_UPSERT_STEP = f"""
INSERT INTO steps ({_STEP_COLUMNS})
SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
WHERE EXISTS (SELECT 1 FROM runs WHERE {_HELD_LIVE})
ON CONFLICT (run_id, seq) DO UPDATE SET
    name = excluded.name, kind = excluded.kind, status = excluded.status,
    input = excluded.input, output = excluded.output, error = excluded.error,
    attempts = excluded.attempts, started_at = excluded.started_at,
    finished_at = excluded.finished_at, wake_at = excluded.wake_at,
    usage = excluded.usage, meta = excluded.meta, ev_pos = NULL
"""

_UPSERT_STEP_EVENTS = f"""
INSERT INTO steps ({_STEP_COLUMNS}, ev_pos)
SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
WHERE EXISTS (SELECT 1 FROM runs WHERE {_HELD_LIVE})
ON CONFLICT (run_id, seq) DO UPDATE SET
    name = excluded.name, kind = excluded.kind, status = excluded.status,
    input = excluded.input, output = excluded.output, error = excluded.error,
    attempts = excluded.attempts, started_at = excluded.started_at,
    finished_at = excluded.finished_at, wake_at = excluded.wake_at,
    usage = excluded.usage, meta = excluded.meta,
    ev_pos = excluded.ev_pos
"""

_UPSERT_STEP_RESERVED = _UPSERT_STEP_EVENTS.replace(
    "WHERE EXISTS",
    "WHERE ? - 1 > (SELECT coalesce(max(id), 0) FROM run_events WHERE run_id = ?)\n  AND EXISTS",
)
"""`_UPSERT_STEP_EVENTS` at a reserved position, only if no event of the run is past it. Its
parameters: the row's (the position last), the position and the run again, then the fencing
condition's (plain ? marks: numbered ones with a sequence are an error from Python 3.14 on)."""

_TAKE_EVENT_POSITIONS = (
    "UPDATE sqlite_sequence SET seq = seq + ? WHERE name = 'run_events' RETURNING seq"
)
"""Reserve the next positions of the run event stream (returns the last one reserved)."""

POSITION_BLOCK = 64
"""Positions reserved at a time for the steps of one run held by one claim (32 steps)."""

Positions = dict[tuple[str, int], tuple[int, int]]
"""The reserved positions of runs held here, by (run, fencing token): (next, last)."""


# --- statements, run on the store's threads ------------------------------------------------------


def get_run(conn: sqlite3.Connection, run_id: str) -> RunRecord | None:
    row = conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else run_from_row(row)


def create_run(
    conn: sqlite3.Connection, new: NewRun, owner: str | None, lease_seconds: float
) -> tuple[RunRecord, int | None, bool]:
    now = time.time()
    claimed = owner is not None
    # One statement for the common case (a new id); an existing run is read only on conflict.
    row = conn.execute(
        f"INSERT INTO runs ({RUN_COLUMNS}) VALUES "
        "(?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?, ?, NULL, ?, NULL, ?, ?, ?, 0, 0, NULL) "
        f"ON CONFLICT (id) DO NOTHING RETURNING {RUN_COLUMNS}",
        (
            new.id,
            new.workflow,
            new.version,
            "running" if claimed else "queued",
            dumps(new.input),
            dumps(new.labels or {}),
            dumps(new.budget),
            new.parent_id,
            now,
            now,
            now if claimed else None,
            None if claimed else (new.wake_at if new.wake_at is not None else now),
            owner,
            now + lease_seconds if claimed else None,
            1 if claimed else 0,
        ),
    ).fetchone()
    if row is None:
        existing = get_run(conn, new.id)
        assert existing is not None
        return existing, None, False
    return run_from_row(row), (1 if claimed else None), True


def list_runs(
    conn: sqlite3.Connection,
    status: str | None,
    workflow: str | None,
    labels: dict[str, str] | None,
    limit: int,
    id_contains: str | None = None,
    since: float | None = None,
    until: float | None = None,
    before: tuple[float, str] | None = None,
) -> list[RunRecord]:
    where: list[str] = []
    params: list[Any] = []
    if id_contains:
        where.append("instr(id, ?) > 0")
        params.append(id_contains)
    if since is not None:
        where.append("created_at >= ?")
        params.append(since)
    if until is not None:
        where.append("created_at < ?")
        params.append(until)
    if before is not None:
        # The cursor's time went through a datetime (microseconds): compare at that grain.
        where.append("(created_at < ? OR (created_at < ? AND id < ?))")
        params.extend([before[0] - 5e-7, before[0] + 5e-7, before[1]])
    if status:
        where.append("status = ?")
        params.append(status)
    if workflow:
        where.append("workflow = ?")
        params.append(workflow)
    for key, value in (labels or {}).items():
        where.append("json_extract(labels, ?) = ?")
        params.extend([f'$."{key}"', value])
    sql = f"SELECT {RUN_COLUMNS} FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
    params.append(limit)
    return [run_from_row(row) for row in conn.execute(sql, params)]


def load_run(conn: sqlite3.Connection, run_id: str) -> tuple[RunRecord, list[StepRecord]] | None:
    # One read transaction: in WAL mode both queries see the same snapshot.
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        run = get_run(conn, run_id)
        return None if run is None else (run, load_steps(conn, run_id))
    finally:
        if own:
            conn.execute("COMMIT")


def load_steps(conn: sqlite3.Connection, run_id: str) -> list[StepRecord]:
    rows = conn.execute(
        f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id = ? ORDER BY seq", (run_id,)
    )
    return [step_from_row(row) for row in rows]


# The run waits for this name: alone, or as one of a wait_for_any's `|`-joined names.
_WAITS_FOR = (
    "(waiting_for = ? OR instr('|' || waiting_for || '|', '|' || ? || '|') > 0)"
)


def send_signal(
    conn: sqlite3.Connection, run_id: str, name: str, payload: Any
) -> RunRecord | None:
    if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
        return None
    now = time.time()
    conn.execute(
        "INSERT INTO signals (run_id, name, payload, created_at) VALUES (?, ?, ?, ?)",
        (run_id, name, dumps(payload), now),
    )
    conn.execute(
        "UPDATE runs SET status = 'queued', wake_at = ?, updated_at = ? "
        f"WHERE id = ? AND status = 'waiting' AND {_WAITS_FOR}",
        (now, now, run_id, name, name),
    )
    return get_run(conn, run_id)


def list_signals(conn: sqlite3.Connection, run_id: str) -> list[SignalRecord]:
    rows = conn.execute(
        "SELECT id, run_id, name, payload, created_at, consumed_seq FROM signals "
        "WHERE run_id = ? ORDER BY id",
        (run_id,),
    )
    return [SignalRecord(r[0], r[1], r[2], loads(r[3]), r[4], r[5]) for r in rows]


def cancel_run(conn: sqlite3.Connection, run_id: str, reason: str) -> RunRecord | None:
    run = get_run(conn, run_id)
    if run is None or run.status in FINISHED_STATUSES:
        return run
    now = time.time()
    error = dumps({"type": "RunCancelled", "message": reason})
    if run.status == "running":
        conn.execute(
            "UPDATE runs SET cancel_requested = 1, error = ?, updated_at = ? WHERE id = ?",
            (error, now, run_id),
        )
    else:
        conn.execute(
            "UPDATE runs SET status = 'cancelled', error = ?, finished_at = ?, updated_at = ?, "
            "wake_at = NULL, waiting_for = NULL WHERE id = ?",
            (error, now, now, run_id),
        )
    return get_run(conn, run_id)


def fork_run(
    conn: sqlite3.Connection,
    source_id: str,
    from_seq: int,
    new: NewRun,
    supersede: str | None = None,
) -> RunRecord:
    run, _, _ = create_run(conn, new, None, 0.0)
    conn.execute(
        f"INSERT INTO steps ({_STEP_COLUMNS}) SELECT ?, seq, name, kind, status, input, output, "
        "error, attempts, started_at, finished_at, wake_at, usage, meta FROM steps "
        "WHERE run_id = ? AND seq < ? AND status = 'completed'",
        (new.id, source_id, from_seq),
    )
    if supersede is not None:
        # The fork takes the source's place: its unread mail moves along (a signal sent to a
        # stranded run must not be lost), and the source stops.
        conn.execute(
            "UPDATE signals SET run_id = ? WHERE run_id = ? AND consumed_seq IS NULL",
            (new.id, source_id),
        )
        cancel_run(conn, source_id, supersede)
    return run


def prune(
    conn: sqlite3.Connection,
    finished_before: float,
    status: str | None = None,
    workflow: str | None = None,
    exclude_statuses: Sequence[str] = (),
    exclude_workflows: Sequence[str] = (),
) -> int:
    doomed = (
        f"SELECT id FROM runs WHERE status IN {_FINISHED_SQL} "
        "AND finished_at IS NOT NULL AND finished_at < ?"
    )
    params: list[Any] = [finished_before]
    if status is not None:
        doomed += " AND status = ?"
        params.append(status)
    if workflow is not None:
        doomed += " AND workflow = ?"
        params.append(workflow)
    if exclude_statuses:
        doomed += f" AND status NOT IN ({','.join('?' * len(exclude_statuses))})"
        params.extend(exclude_statuses)
    if exclude_workflows:
        doomed += f" AND workflow NOT IN ({','.join('?' * len(exclude_workflows))})"
        params.extend(exclude_workflows)
    conn.execute(f"DELETE FROM steps WHERE run_id IN ({doomed})", params)
    conn.execute(f"DELETE FROM signals WHERE run_id IN ({doomed})", params)
    conn.execute(f"DELETE FROM run_events WHERE run_id IN ({doomed})", params)
    conn.execute(f"DELETE FROM run_holds WHERE run_id IN ({doomed})", params)
    return conn.execute(f"DELETE FROM runs WHERE id IN ({doomed})", params).rowcount


def claim_runs(
    conn: sqlite3.Connection,
    owner: str,
    workflows: tuple[tuple[str, str], ...],
    limit: int,
    lease_seconds: float,
    executing: Collection[str] | None = None,
    dead_owners: Collection[str] = (),
) -> list[Claim]:
    now = time.time()
    names = sorted({name for name, _ in workflows})
    keys = sorted(f"{name}\x00{version}" for name, version in workflows)
    name_marks = ",".join("?" * len(names))
    key_marks = ",".join("?" * len(keys))
    runnable = (
        f"(version IS NULL AND workflow IN ({name_marks}) "
        f"OR workflow || char(0) || version IN ({key_marks}))"
    )
    strays, stray_params = "", tuple[str, ...]()
    if executing is not None:
        # Runs leased to this owner that it does not execute (see "Claims" in base.py).
        busy = sorted(executing)
        strays = (
            "UNION ALL SELECT id, 0, workflow, version, lease_expires AS due FROM runs"
            f" WHERE status = 'running' AND lease_owner = ?"
            f" AND id NOT IN ({','.join('?' * len(busy))}) AND {runnable}"
        )
        stray_params = (owner, *busy, *names, *keys)
    dead, dead_params = "", tuple[str, ...]()
    gone = sorted(set(dead_owners) - {owner})
    if gone:
        # Runs of owners observed dead (their liveness lock is free): taken over now, before
        # anything else, whatever their lease (see "Liveness" in base.py).
        dead = (
            "UNION ALL SELECT id, 1, workflow, version, 0.0 AS due FROM runs"
            f" WHERE status = 'running' AND lease_expires >= ?"
            f" AND lease_owner IN ({','.join('?' * len(gone))}) AND {runnable}"
        )
        dead_params = (now, *gone, *names, *keys)
    rows = conn.execute(
        f"""
        SELECT id, takeover, workflow, version FROM (
            SELECT id, 0 AS takeover, workflow, version, wake_at AS due FROM runs
             WHERE status = 'queued' AND wake_at <= ? AND {runnable} AND queue IS NULL
            UNION ALL
            SELECT id, 0, workflow, version, wake_at AS due FROM runs
             WHERE status = 'waiting' AND wake_at <= ? AND {runnable} AND queue IS NULL
            UNION ALL
            SELECT id, 1, workflow, version, lease_expires AS due FROM runs
             WHERE status = 'running' AND lease_expires < ? AND lease_owner <> ? AND {runnable}
            {strays}
            {dead}
        ) ORDER BY due LIMIT ?
        """,
        (now, *names, *keys, now, *names, *keys, now, owner, *names, *keys, *stray_params,
         *dead_params, limit),
    ).fetchall()
    latest = dict(workflows)
    return [
        _take(conn, run_id, bool(takeover), owner, lease_seconds, version or latest.get(workflow))
        for run_id, takeover, workflow, version in rows
    ]


def marked_owners(conn: sqlite3.Connection, owner: str) -> list[str]:
    """The owners other than `owner` holding runs under an unexpired lease whose names promise
    a liveness lock (`LIVE_MARK`): the ones worth probing."""
    rows = conn.execute(
        "SELECT DISTINCT lease_owner FROM runs WHERE status = 'running' AND lease_expires >= ?"
        " AND lease_owner LIKE ? AND lease_owner <> ?",
        (time.time(), f"%{LIVE_MARK}", owner),
    ).fetchall()
    return [r[0] for r in rows]


def _take(
    conn: sqlite3.Connection,
    run_id: str,
    recovered: bool,
    owner: str,
    lease_seconds: float,
    version: str | None,
) -> Claim:
    now = time.time()
    # The journal position now: a takeover that finds it where the last claim left it counts a
    # stall (the holder made no progress); progress since resets the count (see base.py).
    last = conn.execute("SELECT max(seq) FROM steps WHERE run_id = ?", (run_id,)).fetchone()[0]
    mark = last or 0
    row = conn.execute(
        f"""
        UPDATE runs SET status = 'running', lease_owner = ?, lease_expires = ?,
            fencing = fencing + 1, recoveries = recoveries + ?,
            stalls = CASE WHEN ? THEN (CASE WHEN claim_mark = ? THEN stalls + 1 ELSE 1 END)
                          ELSE (CASE WHEN claim_mark = ? THEN stalls ELSE 0 END) END,
            claim_mark = ?,
            version = coalesce(version, ?), started_at = coalesce(started_at, ?),
            updated_at = ?, wake_at = NULL, waiting_for = NULL
        WHERE id = ? RETURNING {RUN_COLUMNS}, stalls
        """,
        (
            owner, now + lease_seconds, 1 if recovered else 0,
            recovered, mark, mark, mark,
            version, now, now, run_id,
        ),
    ).fetchone()
    run = run_from_row(row)
    # A run starting is known to have no journal; any other is loaded by the engine.
    return Claim(
        run=run,
        token=run.fencing,
        recovered=recovered,
        stalls=row[-1],
        journal=None if last is not None else [],
    )


def claim_one(
    conn: sqlite3.Connection,
    run_id: str,
    owner: str,
    lease_seconds: float,
    dead_owners: Collection[str] = (),
) -> Claim | None:
    now = time.time()
    gone = sorted(set(dead_owners) - {owner})
    row = conn.execute(
        "SELECT status FROM runs WHERE id = ? AND ("
        " (status IN ('queued', 'waiting') AND wake_at <= ?)"
        " OR (status = 'running' AND lease_expires < ? AND lease_owner <> ?)"
        f" OR (status = 'running' AND lease_owner IN ({','.join('?' * len(gone))})))",
        (run_id, now, now, owner, *gone),
    ).fetchone()
    if row is None:
        return None
    return _take(conn, run_id, row[0] == "running", owner, lease_seconds, None)


def set_budget(
    conn: sqlite3.Connection, run_id: str, budget: dict[str, Any] | None
) -> RunRecord | None:
    now = time.time()
    conn.execute(
        "UPDATE runs SET budget = ?, updated_at = ? WHERE id = ?", (dumps(budget), now, run_id)
    )
    conn.execute(
        "UPDATE runs SET status = 'queued', wake_at = ? "
        "WHERE id = ? AND status = 'waiting' AND waiting_for = 'tether.budget'",
        (now, run_id),
    )
    return get_run(conn, run_id)


def heartbeat(
    conn: sqlite3.Connection,
    owner: str,
    lease_seconds: float,
    progress: Mapping[str, dict[str, Any] | None] | None,
    runs: Collection[str] | None = None,
) -> Heartbeat:
    held = "lease_owner = ? AND status = 'running'"
    params: list[Any] = [owner]
    if runs is not None:
        ids = sorted(runs)
        if not ids:
            return Heartbeat(renewed=0, cancel_requested=frozenset())
        held += f" AND id IN ({','.join('?' * len(ids))})"
        params += ids
    rows = conn.execute(
        f"UPDATE runs SET lease_expires = ? WHERE {held} RETURNING id, cancel_requested",
        (time.time() + lease_seconds, *params),
    ).fetchall()
    if progress:
        conn.executemany(
            "UPDATE runs SET progress = ? WHERE id = ? AND lease_owner = ?",
            [(dumps(p), run_id, owner) for run_id, p in progress.items()],
        )
    return Heartbeat(
        renewed=len(rows),
        cancel_requested=frozenset(r[0] for r in rows if r[1]),
        renewed_ids=frozenset(r[0] for r in rows),
    )


def pending_versions(conn: sqlite3.Connection) -> list[tuple[str, str | None, str, int]]:
    rows = conn.execute(
        "SELECT workflow, version, status, count(*) FROM runs "
        "WHERE status IN ('queued', 'waiting') GROUP BY workflow, version, status"
    ).fetchall()
    return [(r[0], r[1], r[2], int(r[3])) for r in rows]


def next_wake(conn: sqlite3.Connection) -> float | None:
    row = conn.execute(
        "SELECT min(t) FROM ("
        " SELECT min(wake_at) AS t FROM runs WHERE status = 'waiting' AND wake_at IS NOT NULL"
        " UNION ALL SELECT min(wake_at) FROM runs WHERE status = 'queued' AND wake_at IS NOT NULL"
        " UNION ALL SELECT min(lease_expires) FROM runs WHERE status = 'running')"
    ).fetchone()
    return row[0]


def write_step(
    conn: sqlite3.Connection, run_id: str, token: int, step: StepRecord, events: bool = False,
    positions: Positions | None = None,
) -> bool:
    if not events:
        return conn.execute(_UPSERT_STEP, (*step_params(run_id, step), run_id, token)).rowcount == 1
    # The row stands for the step's events (`events_sql`) at two positions of the stream:
    # both must follow every event of the run committed before, in commit order.
    #
    # Positions come from the run_events id counter, reserved `POSITION_BLOCK` at a time per
    # run and claim (`positions`, kept by the store), so most steps write no counter page. A
    # reserved position is used only while no event of the run was appended since it was
    # reserved (an appended event's id is past the whole block; then a new block is taken).
    # Only the claim's holder writes the run's steps, and a new claim has a new token, so no
    # other step row of the run can sit past a position reserved under this one.
    params = step_params(run_id, step)
    key = (run_id, token)
    held = positions.get(key) if positions is not None else None
    if held is not None and held[0] <= held[1]:
        assert positions is not None
        positions[key] = (held[0] + 2, held[1])
        if conn.execute(
            _UPSERT_STEP_RESERVED, (*params, held[0], held[0], run_id, run_id, token)
        ).rowcount:
            return True
        # Fenced off, or an event of the run is past the reserved position.
    position = take_positions(conn, run_id, token, positions)
    return conn.execute(_UPSERT_STEP_EVENTS, (*params, position, run_id, token)).rowcount == 1


def take_positions(
    conn: sqlite3.Connection, run_id: str, token: int, positions: Positions | None
) -> int:
    """Reserve a block of event positions for the run's steps under this claim; returns the
    first step row's (its start event takes the position before)."""
    key = (run_id, token)
    block = POSITION_BLOCK if positions is not None else 2
    (end,) = conn.execute(_TAKE_EVENT_POSITIONS, (block,)).fetchone()
    position = end - block + 2
    if positions is not None:
        if len(positions) > 10_000:
            positions.clear()  # runs this process no longer holds (any entry may go)
        positions[key] = (position + 2, end)
    return position


def consume_signal(
    conn: sqlite3.Connection, run_id: str, token: int, step: StepRecord
) -> SignalRecord | None:
    if conn.execute(f"SELECT 1 FROM runs WHERE {_HELD_LIVE}", (run_id, token)).fetchone() is None:
        return None
    # Idempotent as on PostgreSQL: a consume repeated at the same seq returns the same signal.
    row = conn.execute(
        "SELECT id, payload, created_at FROM signals WHERE run_id = ? AND consumed_seq = ?",
        (run_id, step.seq),
    ).fetchone() or conn.execute(
        "SELECT id, payload, created_at FROM signals "
        "WHERE run_id = ? AND name = ? AND consumed_seq IS NULL ORDER BY id LIMIT 1",
        (run_id, step.name),
    ).fetchone()
    if row is None:
        return None
    conn.execute("UPDATE signals SET consumed_seq = ? WHERE id = ?", (step.seq, row[0]))
    payload = loads(row[1])
    completed = StepRecord(
        run_id=run_id,
        seq=step.seq,
        name=step.name,
        kind=step.kind,
        status="completed",
        input=step.input,
        output=payload,
        attempts=step.attempts,
        started_at=step.started_at,
        finished_at=step.finished_at,
        meta=step.meta,
    )
    conn.execute(_UPSERT_STEP, (*step_params(run_id, completed), run_id, token))
    return SignalRecord(row[0], run_id, step.name, payload, row[2], step.seq)


def consume_first_signal(
    conn: sqlite3.Connection, run_id: str, token: int, step: StepRecord, names: Sequence[str]
) -> SignalRecord | None:
    if conn.execute(f"SELECT 1 FROM runs WHERE {_HELD_LIVE}", (run_id, token)).fetchone() is None:
        return None
    marks = ", ".join("?" * len(names))
    row = conn.execute(
        "SELECT id, name, payload, created_at FROM signals WHERE run_id = ? AND consumed_seq = ?",
        (run_id, step.seq),
    ).fetchone() or conn.execute(
        "SELECT id, name, payload, created_at FROM signals "
        f"WHERE run_id = ? AND name IN ({marks}) AND consumed_seq IS NULL ORDER BY id LIMIT 1",
        (run_id, *names),
    ).fetchone()
    if row is None:
        return None
    conn.execute("UPDATE signals SET consumed_seq = ? WHERE id = ?", (step.seq, row[0]))
    payload = loads(row[2])
    completed = StepRecord(
        run_id=run_id,
        seq=step.seq,
        name=step.name,
        kind=step.kind,
        status="completed",
        input=step.input,
        output={"name": row[1], "payload": payload},
        attempts=step.attempts,
        started_at=step.started_at,
        finished_at=step.finished_at,
        meta=step.meta,
    )
    conn.execute(_UPSERT_STEP, (*step_params(run_id, completed), run_id, token))
    return SignalRecord(row[0], run_id, row[1], payload, row[3], step.seq)


def cancel_requests(conn: sqlite3.Connection, owner: str) -> frozenset[str]:
    rows = conn.execute(
        "SELECT id FROM runs WHERE lease_owner = ? AND status = 'running' "
        "AND cancel_requested = 1",
        (owner,),
    ).fetchall()
    return frozenset(r[0] for r in rows)


def suspend_run(
    conn: sqlite3.Connection,
    run_id: str,
    token: int,
    wake_at: float | None,
    waiting_for: str | Sequence[str] | None,
) -> str | None:
    now = time.time()
    names = waiting_names(waiting_for)
    marks = ", ".join("?" * len(names))
    pending = bool(names) and (
        conn.execute(
            f"SELECT 1 FROM signals WHERE run_id = ? AND name IN ({marks}) "
            "AND consumed_seq IS NULL LIMIT 1",
            (run_id, *names),
        ).fetchone()
        is not None
    )
    status = "queued" if pending else "waiting"
    changed = conn.execute(
        "UPDATE runs SET status = ?, wake_at = ?, waiting_for = ?, lease_owner = NULL, "
        f"lease_expires = NULL, progress = NULL, updated_at = ? WHERE {_HELD_LIVE}",
        (status, now if pending else wake_at, encode_waiting_for(waiting_for), now, run_id, token),
    ).rowcount
    return status if changed else None


def finish_run(
    conn: sqlite3.Connection,
    run_id: str,
    token: int,
    status: str,
    output: Any,
    error: dict[str, Any] | None,
) -> RunRecord | None:
    now = time.time()
    condition = _HELD if status == "cancelled" else _HELD_LIVE
    row = conn.execute(
        "UPDATE runs SET status = ?, output = ?, error = ?, finished_at = ?, updated_at = ?, "
        "lease_owner = NULL, lease_expires = NULL, wake_at = NULL, waiting_for = NULL, "
        "progress = NULL "
        f"WHERE {condition} RETURNING {RUN_COLUMNS}",
        (status, dumps(output), dumps(error), now, now, run_id, token),
    ).fetchone()
    if row is None:
        return None
    # the run's last event, in the transaction that ends it (`finish_appends_event`)
    conn.execute(
        "INSERT OR IGNORE INTO run_events (run_id, kind, at, data, key) "
        "VALUES (?, 'finished', ?, ?, ?)",
        (run_id, now, dumps({"status": status}), f"{run_id}:finished"),
    )
    return run_from_row(row)


def release_run(conn: sqlite3.Connection, run_id: str, token: int) -> bool:
    now = time.time()
    return (
        conn.execute(
            "UPDATE runs SET status = 'queued', lease_owner = NULL, lease_expires = NULL, "
            f"progress = NULL, wake_at = ?, updated_at = ? WHERE {_HELD}",
            (now, now, run_id, token),
        ).rowcount
        == 1
    )
