"""The PostgreSQL store's statements: one coroutine per store operation, run on a connection
inside a transaction the caller owns (see `tether.store.postgres`).

Every function that writes on behalf of a claimed run is fenced (the run must still carry the
caller's token) and idempotent: re-running it after a lost connection, when the first attempt's
commit outcome is unknown, gives the same answer and changes nothing more. Functions return
``(result, notify)``; ``notify`` asks the caller to NOTIFY idle workers (in the same
transaction, or right after a single statement run in autocommit).

Times come from the server's clock (``statement_timestamp()``), so hosts with skewed clocks
agree about leases and due runs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any, LiteralString, TypeAlias

import psycopg
from psycopg import AsyncConnection

from tether.store import events_sql
from tether.store.base import (
    FINISHED_STATUSES,
    LIVE_MARK,
    Claim,
    Heartbeat,
    NewRun,
    NewRunEvent,
    RunRecord,
    SignalRecord,
    StepRecord,
    encode_waiting_for,
    waiting_names,
)

Conn: TypeAlias = AsyncConnection[Any]
Outcome: TypeAlias = tuple[Any, bool]

NOW = "extract(epoch FROM statement_timestamp())::float8"
RUN_COLUMNS = (
    "id, workflow, version, status, input, output, error, labels, budget, parent_id, "
    "created_at, updated_at, started_at, finished_at, wake_at, waiting_for, lease_owner, "
    "lease_expires, fencing, recoveries, cancel_requested, progress"
)
STEP_COLUMNS = (
    "run_id, seq, name, kind, status, input, output, error, attempts, started_at, finished_at, "
    "wake_at, usage, meta"
)
_R_COLUMNS = ", ".join(f"r.{c.strip()}" for c in RUN_COLUMNS.split(","))
_FINISHED = "('cancelled', 'failed', 'refused', 'succeeded')"
assert set(_FINISHED.strip("()").replace("'", "").split(", ")) == FINISHED_STATUSES
_HELD = "id = %s AND fencing = %s AND status = 'running'"
_HELD_LIVE = _HELD + " AND NOT cancel_requested"
_PRUNE_CHUNK = 500


# Array parameters are sent as %b (binary): text-format arrays are escaped element by element
# with regular expressions, which made up a sixth of a busy worker's CPU.

# One encoder for every write: json.dumps with non-default separators builds a new encoder on
# each call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def dumps(value: Any) -> str | None:
    return None if value is None else _ENCODER.encode(value)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def run_from_row(row: Sequence[Any]) -> RunRecord:
    return RunRecord(
        id=row[0],
        workflow=row[1],
        version=row[2],
        status=row[3],
        input=loads(row[4]),
        output=loads(row[5]),
        error=loads(row[6]),
        labels=row[7] or {},
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
        cancel_requested=row[20],
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


# --- reads ---------------------------------------------------------------------------------------


async def get_run(conn: Conn, run_id: str) -> RunRecord | None:
    cur = await conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = %s", (run_id,))
    row = await cur.fetchone()
    return None if row is None else run_from_row(row)


async def list_runs(
    conn: Conn,
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
        where.append("strpos(id, %s) > 0")
        params.append(id_contains)
    if since is not None:
        where.append("created_at >= %s")
        params.append(since)
    if until is not None:
        where.append("created_at < %s")
        params.append(until)
    if before is not None:
        # The cursor's time went through a datetime (microseconds): compare at that grain.
        where.append("(created_at < %s OR (created_at < %s AND id < %s))")
        params.extend([before[0] - 5e-7, before[0] + 5e-7, before[1]])
    if status:
        where.append("status = %s")
        params.append(status)
    if workflow:
        where.append("workflow = %s")
        params.append(workflow)
    if labels:
        where.append("labels @> %s::jsonb")
        params.append(json.dumps(labels))
    sql = f"SELECT {RUN_COLUMNS} FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC LIMIT %s"
    params.append(limit)
    cur = await conn.execute(sql.encode(), params)  # composed from fixed fragments only
    return [run_from_row(row) for row in await cur.fetchall()]


async def load_steps(conn: Conn, run_id: str) -> list[StepRecord]:
    cur = await conn.execute(
        f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = %s ORDER BY seq", (run_id,)
    )
    return [step_from_row(row) for row in await cur.fetchall()]


_N_RUN = len(RUN_COLUMNS.split(","))
_N_STEP = len(STEP_COLUMNS.split(","))
assert STEP_COLUMNS.startswith("run_id, seq, ")
# One statement, so one snapshot and one round trip: the run's row, then its journal's rows.
# Untyped NULLs in a UNION take the other branch's column types.
_LOAD_RUN = f"""
SELECT 0 AS part, {RUN_COLUMNS}, NULL, NULL AS step_seq, {"NULL, " * (_N_STEP - 3)}NULL
  FROM runs WHERE id = %s
UNION ALL
SELECT 1, {"NULL, " * _N_RUN}{STEP_COLUMNS} FROM steps WHERE run_id = %s
ORDER BY part, step_seq
"""


async def load_run(conn: Conn, run_id: str) -> tuple[RunRecord, list[StepRecord]] | None:
    cur = await conn.execute(_LOAD_RUN, (run_id, run_id))
    rows = await cur.fetchall()
    if not rows or rows[0][0] != 0:
        return None
    run = run_from_row(rows[0][1 : _N_RUN + 1])
    return run, [step_from_row(row[_N_RUN + 1 :]) for row in rows[1:]]


async def list_signals(conn: Conn, run_id: str) -> list[SignalRecord]:
    cur = await conn.execute(
        "SELECT id, run_id, name, payload, created_at, consumed_seq FROM signals "
        "WHERE run_id = %s ORDER BY id",
        (run_id,),
    )
    return [SignalRecord(r[0], r[1], r[2], loads(r[3]), r[4], r[5]) for r in await cur.fetchall()]


async def next_wake(conn: Conn) -> float | None:
    cur = await conn.execute(
        "SELECT least("
        " (SELECT min(wake_at) FROM runs WHERE status IN ('queued', 'waiting')),"
        " (SELECT min(lease_expires) FROM runs WHERE status = 'running'))"
    )
    row = await cur.fetchone()
    return None if row is None else row[0]


# --- client writes -------------------------------------------------------------------------------


async def create_run(
    conn: Conn, new: NewRun, owner: str | None, lease_seconds: float
) -> Outcome:
    claimed = owner is not None
    cur = await conn.execute(
        f"""
        INSERT INTO runs ({RUN_COLUMNS}) VALUES (
            %s, %s, %s, %s, %s, NULL, NULL, %s::jsonb, %s, %s, {NOW}, {NOW},
            CASE WHEN %s THEN {NOW} END, NULL,
            CASE WHEN %s THEN NULL ELSE coalesce(%s, {NOW}) END, NULL,
            %s, CASE WHEN %s THEN {NOW} + %s END, %s, 0, false, NULL)
        ON CONFLICT (id) DO NOTHING
        RETURNING {RUN_COLUMNS}
        """,
        (
            new.id,
            new.workflow,
            new.version,
            "running" if claimed else "queued",
            dumps(new.input),
            json.dumps(new.labels or {}),
            dumps(new.budget),
            new.parent_id,
            claimed,
            claimed,
            new.wake_at,
            owner,
            claimed,
            lease_seconds,
            1 if claimed else 0,
        ),
    )
    row = await cur.fetchone()
    if row is not None:
        return (run_from_row(row), 1 if claimed else None, True), not claimed
    existing = await get_run(conn, new.id)
    assert existing is not None
    if claimed and existing.lease_owner == owner:
        # A retry after a lost connection: our first attempt did commit.
        return (existing, existing.fencing, True), False
    return (existing, None, False), False


_CREATE_RUNS = f"""
INSERT INTO runs ({RUN_COLUMNS})
SELECT n.id, n.workflow, n.version,
       CASE WHEN n.owner IS NULL THEN 'queued' ELSE 'running' END,
       n.input, NULL, NULL, n.labels::jsonb, n.budget, n.parent_id, {NOW}, {NOW},
       CASE WHEN n.owner IS NOT NULL THEN {NOW} END, NULL,
       CASE WHEN n.owner IS NULL THEN coalesce(n.wake_at, {NOW}) END, NULL,
       n.owner, CASE WHEN n.owner IS NOT NULL THEN {NOW} + n.lease END,
       CASE WHEN n.owner IS NULL THEN 0 ELSE 1 END, 0, false, NULL
  FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
              %b::text[], %b::float8[], %b::text[], %b::float8[])
       AS n(id, workflow, version, input, labels, budget, parent_id, wake_at, owner, lease)
 ORDER BY n.id
ON CONFLICT (id) DO NOTHING
RETURNING {RUN_COLUMNS}
"""


async def create_runs(
    conn: Conn, creates: Sequence[tuple[NewRun, str | None, float]]
) -> list[Outcome]:
    """`create_run` for many runs in one statement (a client starting a backlog: one round
    trip per batch instead of per run). Rows ordered by id, so two batches inserting the same
    ids wait on each other in one order. A run not inserted (its id exists, or a second
    create of one id in the batch) gets `create_run`'s own answer for an existing id."""
    if len(creates) == 1:
        return [await create_run(conn, *creates[0])]
    cur = await conn.execute(
        _CREATE_RUNS,
        (
            [n.id for n, _, _ in creates],
            [n.workflow for n, _, _ in creates],
            [n.version for n, _, _ in creates],
            [dumps(n.input) for n, _, _ in creates],
            [json.dumps(n.labels or {}) for n, _, _ in creates],
            [dumps(n.budget) for n, _, _ in creates],
            [n.parent_id for n, _, _ in creates],
            [n.wake_at for n, _, _ in creates],
            [owner for _, owner, _ in creates],
            [float(lease) for _, _, lease in creates],
        ),
    )
    made = {row[0]: run_from_row(row) for row in await cur.fetchall()}
    outcomes: list[Outcome] = []
    for new, owner, lease in creates:
        run = made.pop(new.id, None)
        if run is None:
            outcomes.append(await create_run(conn, new, owner, lease))
        else:
            claimed = owner is not None
            outcomes.append(((run, 1 if claimed else None, True), not claimed))
    return outcomes


_T_COLUMNS = ", ".join(f"t.{c.strip()}" for c in RUN_COLUMNS.split(","))
_SEND_SIGNAL = f"""
WITH target AS (SELECT {RUN_COLUMNS} FROM runs WHERE id = %s FOR UPDATE),
mail AS (
    INSERT INTO signals (run_id, name, payload, created_at, send_key)
    SELECT id, %s, %s, {NOW}, %s FROM target
    ON CONFLICT (send_key) DO NOTHING
    RETURNING run_id),
woke AS (
    UPDATE runs r SET status = 'queued', wake_at = {NOW}, updated_at = {NOW}
      FROM target t
     WHERE r.id = t.id AND t.status = 'waiting'
       AND (t.waiting_for = %s
            OR position(('|' || %s || '|') IN ('|' || t.waiting_for || '|')) > 0)
       AND EXISTS (SELECT 1 FROM mail)
    RETURNING {_R_COLUMNS})
SELECT *, true FROM woke
UNION ALL
SELECT {_T_COLUMNS}, NOT EXISTS (SELECT 1 FROM mail) FROM target t
 WHERE NOT EXISTS (SELECT 1 FROM woke)
"""


async def send_signal(
    conn: Conn, run_id: str, name: str, payload: Any, key: str | None = None
) -> Outcome:
    # One statement that locks the run row first (FOR UPDATE returns its latest version): a
    # concurrent suspend_run either sees this signal once it gets the lock, or has already set
    # the run waiting, which `woke` turns back to queued. No lost wake-up either way.
    # `key` is the same for every retry of one send: a retry whose first attempt committed
    # inserts nothing, and notifies again in case the first attempt's NOTIFY was lost with it.
    # Without a key (a caller with its own idempotency guard) nothing is deduplicated.
    cur = await conn.execute(_SEND_SIGNAL, (run_id, name, dumps(payload), key, name, name))
    row = await cur.fetchone()
    if row is None:
        return None, False
    return run_from_row(row), bool(row[-1])


_SEND_SIGNALS = f"""
WITH req AS (
    SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[])
        AS req(run_id, name, payload, key)),
target AS (SELECT {RUN_COLUMNS} FROM runs WHERE id = ANY(%b::text[]) ORDER BY id FOR UPDATE),
mail AS (
    INSERT INTO signals (run_id, name, payload, created_at, send_key)
    SELECT req.run_id, req.name, req.payload, {NOW}, req.key
      FROM req JOIN target t ON t.id = req.run_id
    ON CONFLICT (send_key) DO NOTHING
    RETURNING run_id),
woke AS (
    UPDATE runs r SET status = 'queued', wake_at = {NOW}, updated_at = {NOW}
      FROM target t JOIN req ON req.run_id = t.id
     WHERE r.id = t.id AND t.status = 'waiting'
       AND (t.waiting_for = req.name
            OR position(('|' || req.name || '|') IN ('|' || t.waiting_for || '|')) > 0)
       AND t.id IN (SELECT run_id FROM mail)
    RETURNING {_R_COLUMNS})
SELECT *, true FROM woke
UNION ALL
SELECT {_T_COLUMNS}, t.id NOT IN (SELECT run_id FROM mail) FROM target t
 WHERE t.id NOT IN (SELECT id FROM woke)
"""


async def send_signals(
    conn: Conn, sends: Sequence[tuple[str, str, Any, str | None]]
) -> list[Outcome]:
    """`send_signal` for many runs in one statement (a server sending a thousand approvals at
    once). Run ids must be distinct. Same locking and answers as `send_signal`, per run."""
    if len(sends) == 1:
        return [await send_signal(conn, *sends[0])]
    ids = [run_id for run_id, _, _, _ in sends]
    cur = await conn.execute(
        _SEND_SIGNALS,
        (ids, [name for _, name, _, _ in sends], [dumps(p) for _, _, p, _ in sends],
         [key for _, _, _, key in sends], ids),
    )
    found = {row[0]: (run_from_row(row), bool(row[-1])) for row in await cur.fetchall()}
    return [found.get(run_id, (None, False)) for run_id in ids]


async def cancel_run(conn: Conn, run_id: str, reason: str) -> Outcome:
    cur = await conn.execute("SELECT status FROM runs WHERE id = %s FOR UPDATE", (run_id,))
    row = await cur.fetchone()
    if row is None:
        return None, False
    if row[0] not in FINISHED_STATUSES:
        error = dumps({"type": "RunCancelled", "message": reason})
        if row[0] == "running":
            await conn.execute(
                f"UPDATE runs SET cancel_requested = true, error = %s, updated_at = {NOW} "
                "WHERE id = %s",
                (error, run_id),
            )
        else:
            await conn.execute(
                f"UPDATE runs SET status = 'cancelled', error = %s, finished_at = {NOW}, "
                f"updated_at = {NOW}, wake_at = NULL, waiting_for = NULL WHERE id = %s",
                (error, run_id),
            )
    return await get_run(conn, run_id), False


async def fork_run(
    conn: Conn, source_id: str, from_seq: int, new: NewRun, supersede: str | None = None
) -> Outcome:
    (run, _, created), _ = await create_run(conn, new, None, 0.0)
    if created:
        await conn.execute(
            f"INSERT INTO steps ({STEP_COLUMNS}) SELECT %s, seq, name, kind, status, input, "
            "output, error, attempts, started_at, finished_at, wake_at, usage, meta FROM steps "
            "WHERE run_id = %s AND seq < %s AND status = 'completed'",
            (new.id, source_id, from_seq),
        )
        if supersede is not None:
            # The fork takes the source's place: its unread mail moves along, the source stops.
            await cancel_run(conn, source_id, supersede)
            await conn.execute(
                "UPDATE signals SET run_id = %s WHERE run_id = %s AND consumed_seq IS NULL",
                (new.id, source_id),
            )
    return run, True


async def set_budget(conn: Conn, run_id: str, budget: dict[str, Any] | None) -> Outcome:
    cur = await conn.execute(
        f"UPDATE runs SET budget = %s, updated_at = {NOW}, "
        "status = CASE WHEN status = 'waiting' AND waiting_for = 'tether.budget' "
        "              THEN 'queued' ELSE status END, "
        f"wake_at = CASE WHEN status = 'waiting' AND waiting_for = 'tether.budget' "
        f"              THEN {NOW} ELSE wake_at END "
        f"WHERE id = %s RETURNING {RUN_COLUMNS}",
        (dumps(budget), run_id),
    )
    row = await cur.fetchone()
    if row is None:
        return None, False
    run = run_from_row(row)
    return run, run.status == "queued"


async def prune(
    conn: Conn,
    finished_before: float,
    status: str | None = None,
    workflow: str | None = None,
    exclude_statuses: Sequence[str] = (),
    exclude_workflows: Sequence[str] = (),
) -> int:
    """Delete one chunk of finished runs; the caller repeats until a chunk comes back short
    (one huge transaction would hold locks and bloat WAL on a big backlog)."""
    cur = await conn.execute(
        f"""
        WITH doomed AS (
            DELETE FROM runs WHERE id IN (
                SELECT id FROM runs WHERE finished_at < %s AND status IN {_FINISHED}
                AND (%s::text IS NULL OR status = %s) AND (%s::text IS NULL OR workflow = %s)
                AND NOT (status = ANY(%s::text[])) AND NOT (workflow = ANY(%s::text[]))
                ORDER BY finished_at LIMIT %s FOR UPDATE SKIP LOCKED)
            RETURNING id),
        journal AS (DELETE FROM steps WHERE run_id IN (SELECT id FROM doomed)),
        mailbox AS (DELETE FROM signals WHERE run_id IN (SELECT id FROM doomed)),
        events AS (DELETE FROM run_events WHERE run_id IN (SELECT id FROM doomed))
        SELECT count(*) FROM doomed
        """,
        (finished_before, status, status, workflow, workflow, list(exclude_statuses),
         list(exclude_workflows), _PRUNE_CHUNK),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


PRUNE_CHUNK = _PRUNE_CHUNK


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
        RETURNING {_R_COLUMNS}, r.stalls, c.takeover,
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
        RETURNING {_R_COLUMNS}, r.stalls, c.takeover,
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
 WHERE EXISTS (SELECT 1 FROM runs WHERE {_HELD_LIVE} FOR SHARE)
ON CONFLICT (run_id, seq) DO UPDATE SET
    name = excluded.name, kind = excluded.kind, status = excluded.status,
    input = excluded.input, output = excluded.output, error = excluded.error,
    attempts = excluded.attempts, started_at = excluded.started_at,
    finished_at = excluded.finished_at, wake_at = excluded.wake_at,
    usage = excluded.usage, meta = excluded.meta, ev_pos = {keep}
RETURNING run_id, seq
"""


_UPSERT_STEP = _upsert_step(False)
_UPSERT_STEP_POS = _upsert_step(True)


def _riding(statement: LiteralString) -> LiteralString:
    """`statement` with a batch of run events appended ahead of it in a data-modifying CTE
    (executed once, whatever the statement does): events cost no statement, transaction or
    round trip of their own. They are not fenced (as `append_run_events` is not): keyed events
    are stored once whoever writes them first.

    The statement's own positions in the stream (a step's ``ev_pos``, a finished event) come
    after the events': its first ``WHERE`` waits for the CTE, which returns a row per event
    stored, so their ids are taken first."""
    cte = f"ev AS ({events_sql.POSTGRES_APPEND.strip()} RETURNING 1)"
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
    riders: tuple[Any, ...] = events_sql.postgres_params(events) if events else ()
    if len(writes) == 1:
        # A sequential run's every step: scalar parameters are cheaper to send than arrays.
        run_id, token, _ = writes[0]
        row = _step_row(*writes[0])
        position = bool(positions and positions[0])
        if position:
            statement = _UPSERT_STEP_POS_EV if events else _UPSERT_STEP_POS
        else:
            statement = _UPSERT_STEP_EV if events else _UPSERT_STEP
        cur = await conn.execute(statement, (*riders, row[0], *row[2:], run_id, token))
        return {(r[0], r[1]) for r in await cur.fetchall()}
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
WITH held AS (SELECT 1 FROM runs WHERE {_HELD_LIVE} FOR SHARE),
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
WITH held AS (SELECT 1 FROM runs WHERE {_HELD_LIVE} FOR SHARE),
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


async def release_run(conn: Conn, run_id: str, token: int) -> Outcome:
    cur = await conn.execute(
        "UPDATE runs SET status = 'queued', lease_owner = NULL, lease_expires = NULL, "
        f"progress = NULL, wake_at = {NOW}, updated_at = {NOW} WHERE {_HELD} RETURNING 1",
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
    RETURNING r.id, r.status),
fe AS ({_FINISHED_EVENT.strip()})
SELECT id FROM fin
"""
_FINISH_RUN = f"""
WITH fin AS (
    UPDATE runs SET status = %s, output = %s, error = %s,
        finished_at = {NOW}, updated_at = {NOW}, lease_owner = NULL, lease_expires = NULL,
        wake_at = NULL, waiting_for = NULL, progress = NULL
     WHERE id = %s AND fencing = %s AND status = 'running'
       AND (%s = 'cancelled' OR NOT cancel_requested)
    RETURNING id, status),
fe AS ({_FINISHED_EVENT.strip()})
SELECT id FROM fin
"""
_ALREADY_FINISHED = """
SELECT r.id FROM runs r
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
_FINISH_RUNS_EV = _riding(_FINISH_RUNS)


async def finish_runs(
    conn: Conn,
    finishes: Sequence[tuple[str, int, str, Any, dict[str, Any] | None]],
    events: Sequence[NewRunEvent] = (),
) -> set[str]:
    """`finish_run` for many runs in one statement; returns the ids finished. Run ids must be
    distinct. A run found already finished with the caller's token and status counts as
    finished: a token is unique to one claim, so that was our own earlier attempt whose commit
    we did not hear about. `events` ride along in the same statement (see `_riding`)."""
    riders: tuple[Any, ...] = events_sql.postgres_params(events) if events else ()
    ids = [f[0] for f in finishes]
    tokens = [f[1] for f in finishes]
    statuses = [f[2] for f in finishes]
    if len(finishes) == 1:
        # A lone finish (every sequential run): scalar parameters, no unnest to plan.
        run_id, token, status, output, error = finishes[0]
        cur = await conn.execute(
            _FINISH_RUN_EV if events else _FINISH_RUN,
            (*riders, status, dumps(output), dumps(error), run_id, token, status),
        )
    else:
        cur = await conn.execute(
            _FINISH_RUNS_EV if events else _FINISH_RUNS,
            (*riders, ids, tokens, statuses, [dumps(f[3]) for f in finishes],
             [dumps(f[4]) for f in finishes], ids),
        )
    done = {r[0] for r in await cur.fetchall()}
    if len(done) < len(finishes):
        missing = [i for i, run_id in enumerate(ids) if run_id not in done]
        cur = await conn.execute(
            _ALREADY_FINISHED,
            ([ids[i] for i in missing], [tokens[i] for i in missing], [statuses[i] for i in missing]),
        )
        done |= {r[0] for r in await cur.fetchall()}
    return done
