"""The PostgreSQL store's statements on the runs a worker holds: claims and leases, journal
writes, signal consumption, suspension, release and finishing (the client's statements and
the shared column lists are in `tether.store.postgres_sql`; see it for the rules: fenced,
idempotent, ``(result, notify)``, server time)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any, LiteralString

import psycopg

from tether.store import events_sql
from tether.store import postgres_wire as wire
from tether.store.base import (
    LIVE_MARK,
    Claim,
    Heartbeat,
    NewRunEvent,
    RunRecord,
    SignalRecord,
    StepRecord,
    encode_waiting_for,
    waiting_names,
)
from tether.store.postgres_sql import (
    HELD,
    HELD_LIVE,
    NOW,
    R_COLUMNS,
    RUN_COLUMNS,
    STEP_COLUMNS,
    Conn,
    Outcome,
    dumps,
    loads,
    run_from_row,
    step_from_row,
)

# --- worker side ---------------------------------------------------------------------------------


async def claim_runs(
    conn: Conn,
    owner: str,
    workflows: Sequence[tuple[str, str]],
    limit: int,
    lease_seconds: float,
    executing: Sequence[str] | None = None,
) -> list[Claim]:
    latest: dict[str, str] = {}
    for name, version in workflows:
        latest[name] = version  # as SQLiteStore: unpinned runs take the last listed version
    names = list(latest)
    pairs_names = [name for name, _ in workflows]
    pairs_versions = [version for _, version in workflows]
    # Runnable runs by due time and runs to take over by lease expiry, each from its own index
    # in order and locked up to the limit, then the earliest of both: one ORDER BY over both
    # kinds (a CASE) could use neither index, so a claim of 100 read and sorted every due run
    # of a backlog.
    cur = await conn.execute(
        f"""
        WITH due AS (
            SELECT id, {_MARK} AS mark, false AS takeover, wake_at AS sort
              FROM runs
             WHERE status IN ('queued', 'waiting') AND wake_at <= {NOW} AND queue IS NULL
               AND {_OF_WORKFLOWS}
             ORDER BY wake_at
             LIMIT %s
             FOR UPDATE SKIP LOCKED),
        held AS (
            SELECT id, {_MARK} AS mark, lease_owner <> %s AS takeover, lease_expires AS sort
              FROM runs
             WHERE (({_TAKEOVER}) OR ({_STRAY}))
               AND {_OF_WORKFLOWS}
             ORDER BY lease_expires
             LIMIT %s
             FOR UPDATE SKIP LOCKED),
        candidate AS (
            SELECT id, mark, takeover, sort
              FROM (SELECT * FROM due UNION ALL SELECT * FROM held) u
             ORDER BY sort
             LIMIT %s)
        UPDATE runs r SET status = 'running', lease_owner = %s,
            lease_expires = {NOW} + %s, fencing = r.fencing + 1,
            recoveries = r.recoveries + c.takeover::int,
            {_STALLS},
            version = coalesce(r.version, (SELECT l.v FROM unnest(%b::text[], %b::text[])
                                           AS l(n, v) WHERE l.n = r.workflow)),
            started_at = coalesce(r.started_at, {NOW}), updated_at = {NOW},
            wake_at = NULL, waiting_for = NULL
          FROM candidate c WHERE r.id = c.id
        RETURNING {R_COLUMNS}, r.stalls, c.takeover,
                  c.mark > 0, c.sort
        """,
        (
            names,
            pairs_names,
            pairs_versions,
            limit,
            owner,
            owner,
            lease_seconds,
            owner,
            executing,
            executing,
            names,
            pairs_names,
            pairs_versions,
            limit,
            limit,
            owner,
            lease_seconds,
            names,
            [latest[n] for n in names],
        ),
    )
    # In due order (RETURNING follows the update's own order): the last column is the key.
    rows = sorted(await cur.fetchall(), key=lambda row: (row[-1] is None, row[-1] or 0.0))
    claims = [_claim_from_row(row[:-1]) for row in rows]
    resumed = [c.run.id for c in claims if c.journal is None]
    if not resumed:
        return claims
    # Runs resuming (after a signal, a timer, a takeover) need their journals: one query for
    # the whole batch. The rows are ours now (claimed), so nothing changes them meanwhile.
    journals: dict[str, list[StepRecord]] = {run_id: [] for run_id in resumed}
    try:
        cur = await conn.execute(
            f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ANY(%b::text[]) "
            "ORDER BY run_id, seq",
            (resumed,),
        )
        rows = await cur.fetchall()
    except psycopg.OperationalError:
        # The claims are committed: hand them over without journals (the engine loads each
        # with its own retries) rather than fail the call and strand them until their leases
        # expire.
        return claims
    for row in rows:
        journals[row[0]].append(step_from_row(row))
    return [
        dataclasses.replace(c, journal=journals[c.run.id]) if c.journal is None else c
        for c in claims
    ]


# The runs of the worker's workflows: unpinned ones by name, pinned ones by (name, version).
_OF_WORKFLOWS = (
    "((version IS NULL AND workflow = ANY(%b::text[]))"
    " OR (workflow, version) IN (SELECT * FROM unnest(%b::text[], %b::text[])))"
)
# A run held by another owner whose lease expired, or whose owner is observed dead: its name
# promises a liveness lock (`LIVE_MARK`) and the lock is free — the session holding it ended
# (see "Liveness" in store/base.py; the probe is transaction-scoped, released at commit). But
# no takeover until one lease period after the server started: a restart stopped every
# worker's renewals and ended every liveness session at once, and live workers get that long
# to reconnect, relock and renew before their runs count as abandoned. A claimer never takes
# over its own run (it may still be executing it; see store/base.py).
_TAKEOVER = (
    f"status = 'running' AND lease_owner <> %s "
    f"AND (lease_expires < {NOW} OR CASE WHEN lease_owner LIKE '%%{LIVE_MARK}' "
    "THEN pg_try_advisory_xact_lock(hashtextextended(lease_owner, 0)) ELSE false END) "
    f"AND {NOW} >= extract(epoch FROM pg_postmaster_start_time())::float8 + %s"
)
LIVENESS_LOCK = "SELECT pg_advisory_lock(hashtextextended(%s, 0))"
"""Taken by a live owner on a session of its own (see `_TAKEOVER`)."""
# A run leased to the claimer that it says it is not executing (`executing`): a claim whose
# acknowledgement was lost, a run it dropped. Taken back at once, as a claim, not a takeover.
_STRAY = (
    "status = 'running' AND lease_owner = %s "
    "AND %b::text[] IS NOT NULL AND NOT (id = ANY(%b::text[]))"
)
# The journal position at the claim (see "Stalls" in store/base.py); also whether the run has a
# journal to load (sequence numbers start at 1). Read by index before the row is locked, but a
# run that is not running gets no journal writes. An EXISTS over steps in RETURNING was
# planned, on tables without statistics yet, as a hashed subplan reading the whole journal
# table per claim.
_MARK = "(SELECT coalesce(max(s.seq), 0) FROM steps s WHERE s.run_id = runs.id)"
_STALLS = (
    "stalls = CASE WHEN c.takeover"
    " THEN (CASE WHEN c.mark = r.claim_mark THEN r.stalls + 1 ELSE 1 END)"
    " ELSE (CASE WHEN c.mark = r.claim_mark THEN r.stalls ELSE 0 END) END,"
    " claim_mark = c.mark"
)


def _claim_from_row(row: Sequence[Any]) -> Claim:
    """A claim statement's row: the run's columns, then stalls, recovered, EXISTS(steps)."""
    run = run_from_row(row)
    return Claim(
        run=run,
        token=run.fencing,
        recovered=bool(row[-2]),
        stalls=row[-3],
        journal=_unknown_or_empty(row[-1]),
    )


def _unknown_or_empty(has_steps: bool) -> list[StepRecord] | None:
    """`Claim.journal` from the claim statement's EXISTS(steps): known empty, or to load."""
    return None if has_steps else []


async def claim_run(conn: Conn, run_id: str, owner: str, lease_seconds: float) -> Outcome:
    cur = await conn.execute(
        f"""
        WITH candidate AS (
            SELECT id, {_MARK} AS mark, status = 'running' AS takeover FROM runs
             WHERE id = %s
               AND ((status IN ('queued', 'waiting') AND wake_at <= {NOW})
                    OR ({_TAKEOVER}))
             FOR UPDATE SKIP LOCKED)
        UPDATE runs r SET status = 'running', lease_owner = %s,
            lease_expires = {NOW} + %s, fencing = r.fencing + 1,
            recoveries = r.recoveries + c.takeover::int,
            {_STALLS},
            started_at = coalesce(r.started_at, {NOW}), updated_at = {NOW},
            wake_at = NULL, waiting_for = NULL
          FROM candidate c WHERE r.id = c.id
        RETURNING {R_COLUMNS}, r.stalls, c.takeover,
                  c.mark > 0
        """,
        (run_id, owner, lease_seconds, owner, lease_seconds),
    )
    row = await cur.fetchone()
    if row is None:
        return None, False
    return _claim_from_row(row), False


async def heartbeat(
    conn: Conn,
    owner: str,
    lease_seconds: float,
    progress: Mapping[str, dict[str, Any] | None] | None,
    runs: Collection[str] | None = None,
) -> Heartbeat:
    items = list((progress or {}).items())
    only = None if runs is None else sorted(runs)
    # Rows are locked in id order, as every batch locks them, so a heartbeat never deadlocks
    # with the worker's own writes.
    cur = await conn.execute(
        f"""
        WITH held AS (
            SELECT id FROM runs WHERE lease_owner = %s AND status = 'running'
               AND (%b::text[] IS NULL OR id = ANY(%b::text[]))
             ORDER BY id FOR UPDATE),
        reported AS (SELECT * FROM unnest(%b::text[], %b::text[]) AS p(id, progress))
        UPDATE runs r SET lease_expires = {NOW} + %s,
            progress = CASE WHEN p.id IS NULL THEN r.progress ELSE p.progress END
          FROM held h LEFT JOIN reported p ON p.id = h.id
         WHERE r.id = h.id
        RETURNING r.id, r.cancel_requested
        """,
        (owner, only, only, [k for k, _ in items], [dumps(v) for _, v in items], lease_seconds),
    )
    rows = await cur.fetchall()
    return Heartbeat(
        renewed=len(rows),
        cancel_requested=frozenset(r[0] for r in rows if r[1]),
        renewed_ids=frozenset(r[0] for r in rows),
    )


def _step_row(run_id: str, token: int, step: StepRecord) -> tuple[Any, ...]:
    return (
        run_id,
        token,
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


# A journal write with ``positions`` (`Store.write_step`'s ``events``) takes a position in the
# run event stream for the row: ``ev_pos`` from the run_events id sequence, which counts in
# twos (migration 0024), so ``ev_pos - 1`` is never an event's id and the derived
# ``step_started`` sits there (see `tether.store.events_sql`). A rewrite keeps the position
# the row already has (a retry whose first attempt committed must not move its events); a
# write without one clears it, as on SQLite.
_EV_POS = "CASE WHEN s.pos THEN nextval('run_events_id_seq') END"
_KEEP_POS = (
    "CASE WHEN excluded.ev_pos IS NULL THEN NULL ELSE coalesce(steps.ev_pos, excluded.ev_pos) END"
)
_UPSERT_STEPS = f"""
WITH s AS (
    SELECT * FROM unnest(%b::text[], %b::bigint[], %b::int[], %b::text[], %b::text[],
                         %b::text[], %b::text[], %b::text[], %b::text[], %b::int[],
                         %b::float8[], %b::float8[], %b::float8[], %b::text[], %b::text[],
                         %b::bool[])
        AS s(run_id, token, seq, name, kind, status, input, output, error, attempts,
             started_at, finished_at, wake_at, usage, meta, pos)),
held AS (
    SELECT r.id, r.fencing FROM runs r
     WHERE r.id = ANY(%b::text[]) AND r.status = 'running' AND NOT r.cancel_requested
     ORDER BY r.id FOR SHARE OF r)
INSERT INTO steps ({STEP_COLUMNS}, ev_pos)
SELECT s.run_id, s.seq, s.name, s.kind, s.status, s.input, s.output, s.error, s.attempts,
       s.started_at, s.finished_at, s.wake_at, s.usage, s.meta, {_EV_POS}
  FROM s JOIN held h ON h.id = s.run_id AND h.fencing = s.token
 WHERE true
ON CONFLICT (run_id, seq) DO UPDATE SET
    name = excluded.name, kind = excluded.kind, status = excluded.status,
    input = excluded.input, output = excluded.output, error = excluded.error,
    attempts = excluded.attempts, started_at = excluded.started_at,
    finished_at = excluded.finished_at, wake_at = excluded.wake_at,
    usage = excluded.usage, meta = excluded.meta, ev_pos = {_KEEP_POS}
RETURNING run_id, seq
"""


def _upsert_step(position: bool) -> LiteralString:
    pos = "nextval('run_events_id_seq')" if position else "NULL"
    keep = _KEEP_POS if position else "NULL"
    return f"""
INSERT INTO steps ({STEP_COLUMNS}, ev_pos)
SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, {pos}
 WHERE EXISTS (SELECT 1 FROM runs WHERE {HELD_LIVE} FOR SHARE)
ON CONFLICT (run_id, seq) DO UPDATE SET
    name = excluded.name, kind = excluded.kind, status = excluded.status,
    input = excluded.input, output = excluded.output, error = excluded.error,
    attempts = excluded.attempts, started_at = excluded.started_at,
    finished_at = excluded.finished_at, wake_at = excluded.wake_at,
    usage = excluded.usage, meta = excluded.meta, ev_pos = {keep}
"""


_UPSERT_STEP = _upsert_step(False)
_UPSERT_STEP_POS = _upsert_step(True)
_UPSERT_STEP_WIRE = wire.Prepared("upsert_step", _UPSERT_STEP)
_UPSERT_STEP_POS_WIRE = wire.Prepared("upsert_step_pos", _UPSERT_STEP_POS)


def _riding(
    statement: LiteralString, append: LiteralString = events_sql.POSTGRES_APPEND
) -> LiteralString:
    """`statement` with a batch of run events appended ahead of it in a data-modifying CTE
    (executed once, whatever the statement does): events cost no statement, transaction or
    round trip of their own. They are not fenced (as `append_run_events` is not): keyed events
    are stored once whoever writes them first.

    The statement's own positions in the stream (a step's ``ev_pos``, a finished event) come
    after the events': its first ``WHERE`` waits for the CTE, which returns a row per event
    stored, so their ids are taken first."""
    cte = f"ev AS ({append.strip()} RETURNING 1)"
    body = statement.strip()
    if body.startswith("WITH "):
        body = f"WITH {cte},\n{body.removeprefix('WITH ')}"
    else:
        body = f"WITH {cte}\n{body}"
    head, where, tail = body.partition("\n WHERE ")
    if not where:
        raise AssertionError("a statement that events ride in needs a WHERE to order them")
    return f"{head}{where}(SELECT count(*) FROM ev) >= 0 AND {tail}"


_UPSERT_STEP_EV = _riding(_UPSERT_STEP)
_UPSERT_STEP_POS_EV = _riding(_UPSERT_STEP_POS)
_UPSERT_STEPS_EV = _riding(_UPSERT_STEPS)
# A sequential run's first step carries its one `run_started` event.
_UPSERT_STEP_EV1_WIRE = wire.Prepared(
    "upsert_step_ev1", _riding(_UPSERT_STEP, events_sql.POSTGRES_APPEND_ONE)
)
_UPSERT_STEP_POS_EV1_WIRE = wire.Prepared(
    "upsert_step_pos_ev1", _riding(_UPSERT_STEP_POS, events_sql.POSTGRES_APPEND_ONE)
)


async def write_steps(
    conn: Conn,
    writes: Sequence[tuple[str, int, StepRecord]],
    events: Sequence[NewRunEvent] = (),
    positions: Sequence[bool] | None = None,
) -> set[tuple[str, int]]:
    """Write many fenced journal entries in one statement (group commit of concurrent runs).
    Returns the ``(run_id, seq)`` written; a missing pair was fenced off. The keys must be
    distinct (one statement cannot update a row twice).

    The fence share-locks the run rows (in id order). A plain read would see the rows as of
    the statement's start, so a takeover committing while the statement runs would not stop
    it; with the lock the statement waits for such a takeover and then re-reads the row,
    finds the new token and writes nothing. Share locks don't block each other, only the
    UPDATEs of claims, heartbeats and finishes.

    `events` ride along in the same statement (see `_riding`); `positions` (one per write)
    says which rows stand for their step's events (see `_EV_POS`)."""
    if len(writes) == 1:
        # A sequential run's every step: scalar parameters are cheaper to send than arrays.
        run_id, token, _ = writes[0]
        row = _step_row(*writes[0])
        position = bool(positions and positions[0])
        params = (row[0], *row[2:], run_id, token)
        if len(events) == 1:
            prepared = _UPSERT_STEP_POS_EV1_WIRE if position else _UPSERT_STEP_EV1_WIRE
            one = events_sql.postgres_one(events[0])
            count = wire.rowcount(await wire.run(conn, prepared, (*one, *params)))
        elif events:
            statement = _UPSERT_STEP_POS_EV if position else _UPSERT_STEP_EV
            riders = events_sql.postgres_params(events)
            count = (await conn.execute(statement, (*riders, *params))).rowcount
        else:
            prepared = _UPSERT_STEP_POS_WIRE if position else _UPSERT_STEP_WIRE
            count = wire.rowcount(await wire.run(conn, prepared, params))
        return {(run_id, writes[0][2].seq)} if count == 1 else set()
    riders: tuple[Any, ...] = events_sql.postgres_params(events) if events else ()
    rows = [_step_row(*w) for w in writes]
    columns: list[list[Any]] = [list(col) for col in zip(*rows, strict=True)]
    columns.append([bool(p) for p in positions] if positions else [False] * len(writes))
    # The run ids again, as `id = ANY(...)`: an index lookup. Joined to the unnest instead, the
    # planner (which guesses one row for it) chose a nested loop over every running run.
    cur = await conn.execute(
        _UPSERT_STEPS_EV if events else _UPSERT_STEPS, [*riders, *columns, columns[0]]
    )
    return {(r[0], r[1]) for r in await cur.fetchall()}


_CONSUME_SIGNAL = f"""
WITH held AS (SELECT 1 FROM runs WHERE {HELD_LIVE} FOR SHARE),
earlier AS (
    SELECT run_id, id, payload, created_at FROM signals
     WHERE run_id = %s AND consumed_seq = %s AND EXISTS (SELECT 1 FROM held)),
taken AS (
    UPDATE signals SET consumed_seq = %s WHERE id = (
        SELECT id FROM signals
         WHERE run_id = %s AND name = %s AND consumed_seq IS NULL
           AND EXISTS (SELECT 1 FROM held) AND NOT EXISTS (SELECT 1 FROM earlier)
         ORDER BY id LIMIT 1 FOR UPDATE)
    RETURNING run_id, id, payload, created_at)
SELECT * FROM earlier UNION ALL SELECT * FROM taken
"""


_CONSUME_SIGNALS = """
WITH req AS (
    SELECT * FROM unnest(%b::text[], %b::bigint[], %b::int[], %b::text[])
        AS req(run_id, token, seq, name)),
held AS (
    SELECT r.id FROM runs r JOIN req ON req.run_id = r.id AND req.token = r.fencing
     WHERE r.id = ANY(%b::text[]) AND r.status = 'running' AND NOT r.cancel_requested
     ORDER BY r.id FOR SHARE OF r),
earlier AS (
    SELECT s.run_id, s.id, s.payload, s.created_at FROM signals s
      JOIN req ON s.run_id = req.run_id AND s.consumed_seq = req.seq
     WHERE s.run_id IN (SELECT id FROM held)),
taken AS (
    UPDATE signals s SET consumed_seq = p.seq
      FROM (SELECT req.seq, (
                SELECT o.id FROM signals o
                 WHERE o.run_id = req.run_id AND o.name = req.name AND o.consumed_seq IS NULL
                 ORDER BY o.id LIMIT 1 FOR UPDATE) AS signal_id
              FROM req
             WHERE req.run_id IN (SELECT id FROM held)
               AND req.run_id NOT IN (SELECT run_id FROM earlier)) p
     WHERE s.id = p.signal_id
    RETURNING s.run_id, s.id, s.payload, s.created_at)
SELECT * FROM earlier UNION ALL SELECT * FROM taken
"""


async def consume_signals(
    conn: Conn, consumes: Sequence[tuple[str, int, StepRecord]]
) -> dict[str, SignalRecord]:
    """`consume_signal` for several runs (distinct run ids): one statement takes the signals,
    one writes the journal entries — inside the caller's transaction. Idempotent: a retry
    whose first attempt committed finds each signal already consumed at its seq. Returns the
    signal taken per run; a run missing had none waiting or was fenced off."""
    if len(consumes) == 1:
        cur = await conn.execute(_CONSUME_SIGNAL, _consume_params(*consumes[0]))
    else:
        ids = [c[0] for c in consumes]
        cur = await conn.execute(
            _CONSUME_SIGNALS,
            (ids, [c[1] for c in consumes], [c[2].seq for c in consumes],
             [c[2].name for c in consumes], ids),
        )
    wanted = {c[0]: c for c in consumes}
    taken: dict[str, SignalRecord] = {}
    for run_id, signal_id, payload, created_at in await cur.fetchall():
        step = wanted[run_id][2]
        taken[run_id] = SignalRecord(signal_id, run_id, step.name, loads(payload), created_at, step.seq)
    if taken:
        # Fenced above with the run rows share-locked until our commit: these writes land.
        await write_steps(
            conn,
            [
                (run_id, wanted[run_id][1], _completed(wanted[run_id][2], signal.payload))
                for run_id, signal in taken.items()
            ],
        )
    return taken


def _consume_params(run_id: str, token: int, step: StepRecord) -> tuple[Any, ...]:
    return (run_id, token, run_id, step.seq, step.seq, run_id, step.name)


def _completed(step: StepRecord, payload: Any) -> StepRecord:
    return dataclasses.replace(
        step, status="completed", output=payload, error=None, wake_at=None, usage=None
    )


_CONSUME_FIRST_SIGNAL = f"""
WITH held AS (SELECT 1 FROM runs WHERE {HELD_LIVE} FOR SHARE),
earlier AS (
    SELECT id, name, payload, created_at FROM signals
     WHERE run_id = %s AND consumed_seq = %s AND EXISTS (SELECT 1 FROM held)),
taken AS (
    UPDATE signals SET consumed_seq = %s WHERE id = (
        SELECT id FROM signals
         WHERE run_id = %s AND name = ANY(%b::text[]) AND consumed_seq IS NULL
           AND EXISTS (SELECT 1 FROM held) AND NOT EXISTS (SELECT 1 FROM earlier)
         ORDER BY id LIMIT 1 FOR UPDATE)
    RETURNING id, name, payload, created_at)
SELECT * FROM earlier UNION ALL SELECT * FROM taken
"""


async def consume_first_signal(
    conn: Conn, run_id: str, token: int, step: StepRecord, names: Sequence[str]
) -> Outcome:
    cur = await conn.execute(
        _CONSUME_FIRST_SIGNAL, (run_id, token, run_id, step.seq, step.seq, run_id, list(names))
    )
    row = await cur.fetchone()
    if row is None:
        return None, False
    signal_id, name, payload, created_at = row
    value = loads(payload)
    # Fenced above with the run row share-locked until our commit: this write lands.
    await write_steps(conn, [(run_id, token, _completed(step, {"name": name, "payload": value}))])
    return SignalRecord(signal_id, run_id, name, value, created_at, step.seq), False


async def cancel_requests(conn: Conn, owner: str) -> frozenset[str]:
    cur = await conn.execute(
        "SELECT id FROM runs WHERE lease_owner = %s AND status = 'running' AND cancel_requested",
        (owner,),
    )
    return frozenset(r[0] for r in await cur.fetchall())


async def suspend_run(
    conn: Conn,
    run_id: str,
    token: int,
    wake_at: float | None,
    waiting_for: str | Sequence[str] | None,
) -> Outcome:
    # Lock the run row, then look at the mailbox in a NEW statement: under READ COMMITTED it
    # takes a fresh snapshot, so a send_signal that committed while we waited for the lock is
    # seen; one that has not yet locked the row will find the run waiting and queue it.
    cur = await conn.execute(
        "SELECT fencing, status, cancel_requested, lease_owner FROM runs WHERE id = %s "
        "FOR UPDATE",
        (run_id,),
    )
    row = await cur.fetchone()
    if row is None or row[0] != token:
        return None, False
    if row[1] != "running" or row[2]:
        if row[1] in ("waiting", "queued") and row[3] is None:
            return row[1], False  # our earlier attempt committed
        return None, False
    # The mailbox look and the update in one statement, a new one after the lock (see above).
    names = waiting_names(waiting_for)
    cur = await conn.execute(
        f"""
        WITH p AS (
            SELECT EXISTS (
                SELECT 1 FROM signals WHERE run_id = %s AND name = ANY(%b::text[])
                   AND consumed_seq IS NULL) AS pending)
        UPDATE runs SET status = CASE WHEN p.pending THEN 'queued' ELSE 'waiting' END,
            wake_at = CASE WHEN p.pending THEN {NOW} ELSE %s END,
            waiting_for = %s, lease_owner = NULL, lease_expires = NULL, progress = NULL,
            updated_at = {NOW}
          FROM p WHERE id = %s
        RETURNING status, p.pending
        """,
        (run_id, names, wake_at, encode_waiting_for(waiting_for), run_id),
    )
    row = await cur.fetchone()
    assert row is not None  # locked above
    return row[0], bool(row[1])


_SUSPEND_RUNS = f"""
WITH req AS (
    SELECT * FROM unnest(%b::text[], %b::bigint[], %b::float8[], %b::text[], %b::text[])
        AS req(id, token, wake_at, waiting_for, names)),
p AS (
    SELECT req.*, EXISTS (
        SELECT 1 FROM signals s
         WHERE s.run_id = req.id AND s.consumed_seq IS NULL
           AND s.name IN (SELECT jsonb_array_elements_text(req.names::jsonb))) AS pending
      FROM req)
UPDATE runs r SET status = CASE WHEN p.pending THEN 'queued' ELSE 'waiting' END,
    wake_at = CASE WHEN p.pending THEN {NOW} ELSE p.wake_at END,
    waiting_for = p.waiting_for, lease_owner = NULL, lease_expires = NULL, progress = NULL,
    updated_at = {NOW}
  FROM p
 WHERE r.id = ANY(%b::text[]) AND r.id = p.id AND r.fencing = p.token
   AND r.status = 'running' AND NOT r.cancel_requested
RETURNING r.id, r.status, p.pending
"""
_ALREADY_SUSPENDED = """
SELECT r.id, r.status FROM runs r
  JOIN unnest(%b::text[], %b::bigint[]) AS s(id, token) ON r.id = s.id AND r.fencing = s.token
 WHERE r.status IN ('waiting', 'queued') AND r.lease_owner IS NULL
"""


async def suspend_runs(
    conn: Conn,
    suspends: Sequence[tuple[str, int, float | None, str | Sequence[str] | None]],
) -> dict[str, Outcome]:
    """`suspend_run` for several runs (distinct ids) in one statement, inside a transaction
    that has already locked their rows in an earlier statement (`lock_runs`): under READ
    COMMITTED this statement's fresh snapshot sees every signal committed before the lock was
    granted, as `suspend_run`'s second statement does. Returns the outcome per run id; a run
    missing was fenced off."""
    ids = [s[0] for s in suspends]
    cur = await conn.execute(
        _SUSPEND_RUNS,
        (ids, [s[1] for s in suspends], [s[2] for s in suspends],
         [encode_waiting_for(s[3]) for s in suspends],
         [dumps(waiting_names(s[3])) for s in suspends], ids),
    )
    done: dict[str, Outcome] = {r[0]: (r[1], bool(r[2])) for r in await cur.fetchall()}
    missing = [s for s in suspends if s[0] not in done]
    if missing:
        # Our earlier attempt committed (see `suspend_run`).
        cur = await conn.execute(
            _ALREADY_SUSPENDED, ([s[0] for s in missing], [s[1] for s in missing])
        )
        done |= {r[0]: (r[1], False) for r in await cur.fetchall()}
    return done


async def release_run(conn: Conn, run_id: str, token: int) -> Outcome:
    cur = await conn.execute(
        "UPDATE runs SET status = 'queued', lease_owner = NULL, lease_expires = NULL, "
        f"progress = NULL, wake_at = {NOW}, updated_at = {NOW} WHERE {HELD} RETURNING 1",
        (run_id, token),
    )
    if await cur.fetchone() is not None:
        return True, True
    cur = await conn.execute(
        "SELECT 1 FROM runs WHERE id = %s AND fencing = %s AND status = 'queued' "
        "AND lease_owner IS NULL",
        (run_id, token),
    )
    return await cur.fetchone() is not None, False


# A run's ``finished`` event is appended by the statement that finishes it, only when it
# does (the engine emits the same keyed event afterwards; the store drops that copy, see
# `PostgresStore.finish_run`): no statement of its own. It follows any events riding along
# (`_riding`), after them.
_FINISHED_EVENT = f"""
INSERT INTO run_events (run_id, kind, at, seq, data, key)
SELECT fin.id, 'finished', {NOW}, NULL, json_build_object('status', fin.status)::text,
       fin.id || ':finished'
  FROM fin
 WHERE true
 ORDER BY fin.id
ON CONFLICT (key) DO NOTHING
"""
_FINISH_RUNS = f"""
WITH f AS (
    SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::text[], %b::text[])
        AS f(id, token, status, output, error)),
fin AS (
    UPDATE runs r SET status = f.status, output = f.output, error = f.error,
        finished_at = {NOW}, updated_at = {NOW}, lease_owner = NULL, lease_expires = NULL,
        wake_at = NULL, waiting_for = NULL, progress = NULL
      FROM f
     WHERE r.id = ANY(%b::text[]) AND r.id = f.id AND r.fencing = f.token
       AND r.status = 'running' AND (f.status = 'cancelled' OR NOT r.cancel_requested)
    RETURNING {R_COLUMNS}),
fe AS ({_FINISHED_EVENT.strip()})
SELECT {RUN_COLUMNS} FROM fin
"""
_FINISH_RUN = f"""
WITH fin AS (
    UPDATE runs SET status = %s, output = %s, error = %s,
        finished_at = {NOW}, updated_at = {NOW}, lease_owner = NULL, lease_expires = NULL,
        wake_at = NULL, waiting_for = NULL, progress = NULL
     WHERE id = %s AND fencing = %s AND status = 'running'
       AND (%s = 'cancelled' OR NOT cancel_requested)
    RETURNING {RUN_COLUMNS}),
fe AS ({_FINISHED_EVENT.strip()})
SELECT {RUN_COLUMNS} FROM fin
"""
_ALREADY_FINISHED = f"""
SELECT {R_COLUMNS} FROM runs r
  JOIN unnest(%b::text[], %b::bigint[], %b::text[]) AS f(id, token, status)
    ON r.id = f.id AND r.fencing = f.token AND r.status = f.status
"""


async def lock_runs(conn: Conn, run_ids: Sequence[str]) -> None:
    """Lock run rows in id order. A batch takes all its row locks up front this way, as
    heartbeats do, so no two transactions ever wait on each other in a cycle."""
    await conn.execute(
        "SELECT 1 FROM runs WHERE id = ANY(%b::text[]) ORDER BY id FOR UPDATE", (list(run_ids),)
    )


_FINISH_RUN_EV = _riding(_FINISH_RUN)
_FINISH_RUN_WIRE = wire.Prepared("finish_run", _FINISH_RUN)
_FINISH_RUNS_EV = _riding(_FINISH_RUNS)


async def finish_runs(
    conn: Conn,
    finishes: Sequence[tuple[str, int, str, Any, dict[str, Any] | None]],
    events: Sequence[NewRunEvent] = (),
) -> dict[str, RunRecord]:
    """`finish_run` for many runs in one statement; returns the rows finished, by id. Run ids
    must be distinct. A run found already finished with the caller's token and status counts as
    finished: a token is unique to one claim, so that was our own earlier attempt whose commit
    we did not hear about. `events` ride along in the same statement (see `_riding`)."""
    riders: tuple[Any, ...] = events_sql.postgres_params(events) if events else ()
    ids = [f[0] for f in finishes]
    tokens = [f[1] for f in finishes]
    statuses = [f[2] for f in finishes]
    if len(finishes) == 1:
        # A lone finish (every sequential run): scalar parameters, no unnest to plan.
        run_id, token, status, output, error = finishes[0]
        params = (status, dumps(output), dumps(error), run_id, token, status)
        if events:
            cur = await conn.execute(_FINISH_RUN_EV, (*riders, *params))
            found = await cur.fetchall()
        else:
            found = wire.rows(conn, await wire.run(conn, _FINISH_RUN_WIRE, params))
    else:
        cur = await conn.execute(
            _FINISH_RUNS_EV if events else _FINISH_RUNS,
            (*riders, ids, tokens, statuses, [dumps(f[3]) for f in finishes],
             [dumps(f[4]) for f in finishes], ids),
        )
        found = await cur.fetchall()
    done = {r[0]: run_from_row(r) for r in found}
    if len(done) < len(finishes):
        missing = [i for i, run_id in enumerate(ids) if run_id not in done]
        cur = await conn.execute(
            _ALREADY_FINISHED,
            ([ids[i] for i in missing], [tokens[i] for i in missing], [statuses[i] for i in missing]),
        )
        done.update((r[0], run_from_row(r)) for r in await cur.fetchall())
    return done
