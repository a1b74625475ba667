"""The PostgreSQL store's statements: one coroutine per store operation, run on a connection
inside a transaction the caller owns (see `tether.store.postgres`). Here the shared column
lists and row readers, the reads, and the client's writes (starts, signals, cancels, forks,
pruning); a worker's statements on the runs it holds are in `tether.store.postgres_journal_sql`.

Every function that writes on behalf of a claimed run is fenced (the run must still carry the
caller's token) and idempotent: re-running it after a lost connection, when the first attempt's
commit outcome is unknown, gives the same answer and changes nothing more. Functions return
``(result, notify)``; ``notify`` asks the caller to NOTIFY idle workers (in the same
transaction, or right after a single statement run in autocommit).

Times come from the server's clock (``statement_timestamp()``), so hosts with skewed clocks
agree about leases and due runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeAlias

from psycopg import AsyncConnection

from tether.store import postgres_wire as wire
from tether.store.base import (
    FINISHED_STATUSES,
    NewRun,
    RunRecord,
    SignalRecord,
    StepRecord,
)
from tether.store.jsontext import dumps, loads

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
R_COLUMNS = ", ".join(f"r.{c.strip()}" for c in RUN_COLUMNS.split(","))
_FINISHED = "('cancelled', 'failed', 'refused', 'succeeded')"
assert set(_FINISHED.strip("()").replace("'", "").split(", ")) == FINISHED_STATUSES
HELD = "id = %s AND fencing = %s AND status = 'running'"
HELD_LIVE = HELD + " AND NOT cancel_requested"
_PRUNE_CHUNK = 500


# Array parameters are sent as %b (binary): text-format arrays are escaped element by element
# with regular expressions, which made up a sixth of a busy worker's CPU.



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


async def get_runs(conn: Conn, run_ids: Sequence[str]) -> dict[str, RunRecord]:
    """`get_run` for many runs in one statement: the runs found, by id."""
    cur = await conn.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ANY(%b::text[])", (list(run_ids),)
    )
    return {row[0]: run_from_row(row) for row in await cur.fetchall()}


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


_CREATE_RUN = wire.Prepared(
    "create_run",
    f"""
INSERT INTO runs ({RUN_COLUMNS}) VALUES (
    %s, %s, %s, %s, %s, NULL, NULL, %s::jsonb, %s, %s, {NOW}, {NOW},
    CASE WHEN %s::boolean THEN {NOW} END, NULL,
    CASE WHEN %s::boolean THEN NULL ELSE coalesce(%s, {NOW}) END, NULL,
    %s, CASE WHEN %s::boolean THEN {NOW} + %s END, %s, 0, false, NULL)
ON CONFLICT (id) DO NOTHING
RETURNING {RUN_COLUMNS}
""",
)


async def create_run(
    conn: Conn, new: NewRun, owner: str | None, lease_seconds: float
) -> Outcome:
    claimed = owner is not None
    result = await wire.run(
        conn,
        _CREATE_RUN,
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
    found = wire.rows(conn, result)
    if found:
        return (run_from_row(found[0]), 1 if claimed else None, True), not claimed
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
    RETURNING {R_COLUMNS})
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
    RETURNING {R_COLUMNS})
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
        events AS (DELETE FROM run_events WHERE run_id IN (SELECT id FROM doomed)),
        holds AS (DELETE FROM run_holds WHERE run_id IN (SELECT id FROM doomed))
        SELECT count(*) FROM doomed
        """,
        (finished_before, status, status, workflow, workflow, list(exclude_statuses),
         list(exclude_workflows), _PRUNE_CHUNK),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


PRUNE_CHUNK = _PRUNE_CHUNK
