"""The Store protocol and the records it speaks in.

A store keeps runs, their journals (one row per sequence number) and their signal mailboxes.
It knows nothing about workflows or steps beyond names and JSON values; the engine gives every
row its meaning. Two implementations share one contract test suite: `SQLiteStore` (embedded,
many worker processes on one host) and `PostgresStore` (many workers on many hosts).

Rules every implementation keeps:

* **Fencing.** Every write made on behalf of a claimed run (`write_step`, `consume_signal`,
  `suspend_run`, `finish_run`, `release_run`) is conditional on the run still carrying the
  caller's fencing token *and* not having a cancel request pending. When the condition fails the
  write changes nothing and returns ``False`` (or ``None``); the engine then reads the run to
  learn whether it lost the lease or was cancelled.
* **Claims.** `claim_runs` atomically takes runnable runs — ``queued`` or ``waiting`` runs whose
  ``wake_at`` has passed, and ``running`` runs whose lease expired and is held by *another*
  owner — sets them ``running`` under the caller's lease and increments their fencing token.
  Taking over an expired lease counts one recovery. Two concurrent claimers never get the same
  run. A claimer never takes over a run it holds itself, even when that lease expired: it may
  still be executing it (its renewal was delayed by a store outage), so it renews it instead.
  A claimer that says which of its runs it executes (`executing`) takes back at once, as a
  plain claim (no recovery), the runs leased to it that it does not execute: those a claim
  whose acknowledgement was lost leased to it, those it dropped. That makes a re-applied claim
  hand over what the first application took.
  A store that can tell it restarted (PostgreSQL) takes over no lease until one lease period
  after it started, so live workers reconnect and renew first.
* **Liveness.** An owner whose name ends with `LIVE_MARK` promises to hold the store's liveness
  lock (`hold_liveness`) for as long as its process lives: SQLite an exclusive ``flock`` on a
  lock file next to the database, which the kernel releases when the process dies; PostgreSQL
  a session-level advisory lock on a connection of its own, which the server releases when
  that session ends. A claimer that can take such an owner's lock knows the owner is dead and
  takes over its ``running`` runs at once, lease expired or not, counting recoveries as for
  an expired lease (PostgreSQL: after the restart period above, too). A paused or slow owner
  keeps its lock, so only its lease can lose it runs; fencing is unchanged. Owners without the
  mark (`App.run`, older workers) are taken over only when their lease expires.
* **Stalls.** Each claim records the run's journal position (its highest ``seq``). A takeover
  that finds the journal still there counts one more stall (`Claim.stalls`); a takeover after
  progress counts the first; any claim after progress resets the count. The engine fails a run
  as poison on stalls, never on recoveries: a run taken over while it progresses is healthy.
* **No lost wake-ups.** `send_signal` makes a ``waiting`` run ``queued`` in the same
  transaction that stores the signal, and `suspend_run` leaves the run ``queued`` instead of
  ``waiting`` when an unconsumed signal it waits for is already in the mailbox — whatever order
  the two transactions commit in. A run may wait for several names at once
  (`ctx.wait_for_any`): `suspend_run` gets them all and checks the mailbox for any of them,
  `send_signal` wakes a run waiting for any of them (see `WAIT_SEPARATOR`).
* **Values.** Payload fields (`input`, `output`, signal payloads, `error`, `usage`, `meta`,
  `labels`) are JSON-compatible Python values; the store encodes and decodes them.
* **Time.** Timestamps are Unix epoch seconds (float).
* **Schema.** Opening applies the migrations the store lacks. A store carrying a migration this
  code does not know that declares older code unsafe (``-- requires-code``, recorded in
  ``schema_compat``) is refused with `SchemaTooNew` before anything is written; a running
  worker asks again once per lease period (`check_schema`). See `tether.store.migrate`.
* **Worker registry.** Each worker process keeps one `WorkerRecord`: written at start
  (`register_worker`), its `last_seen` refreshed by the store's clock once per lease period
  (`touch_worker`), deleted on a graceful stop (`remove_worker`). `list_workers` returns the
  *live* ones: seen within `WORKER_LIVE_LEASES` of their own lease periods. The registry is
  advisory — it never decides who may claim what — and it is how a run of a workflow version
  no live worker serves is flagged instead of waiting silently.
* **Reservations.** A model call covered by a label spend limit reserves its worst-case cost
  before it is sent (`reserve_spend`). In one transaction, serialised per limit key with every
  other reserver on any worker (SQLite ``BEGIN IMMEDIATE``; PostgreSQL a transaction-scoped
  advisory lock per key, taken in sorted order), the store sums for each window the journaled
  cost of the label's steps plus the open reservations, and inserts the reservation only if
  every window still fits; otherwise it inserts nothing and says which window did not fit,
  with the figures. A reservation is live while its run is ``running`` with the reserving
  fencing token and an unexpired lease. One that is no longer live — its worker died or lost
  the run mid-call — may stand for a call that was sent and billed, and whose run sends it
  again: it counts as spent when it was made (inside a window that started before it) and is
  forgotten once it is older than every window checked; only the run's current holder may
  release a reservation (`release_spend`). The journaled sum and
  the reservations are read in one snapshot, and a call's journal entry is written *before*
  its reservation is released (`release_spend`), so a settling call is counted twice for a
  moment, never zero times. Run and node budgets are checked in memory: a run has one holder
  at a time, so its engine keeps their reservations there (see `tether.engine.ledger`). A run
  with a budget also records each call's worst case before it is sent (`hold_usage`), deleted
  by its holder once settled (`release_hold`); a holder that died mid-call leaves its holds,
  and the next holder counts them (`lost_holds`): maybe billed, never journaled. Those holds,
  and the spend reservations of dead holders, are also what reports show as the calls cut by
  crashes (`cut_calls`).
* **Alerts.** An alert is one occurrence of a condition, identified by its `key`;
  `record_alert` inserts it unless that key is stored, or (with a quiet period) unless an
  alert of the same `series` was recorded within it — atomically across workers (SQLite
  ``BEGIN IMMEDIATE``; PostgreSQL a transaction-scoped advisory lock per series), so any number
  of detectors record each occurrence once. Delivery attempts are claimed with a lease
  (`claim_alerts` counts the attempt), and an attempt's outcome is recorded only by the holder
  of that lease (`settle_alert`): a claimer whose lease ran out sees its outcome ignored, and
  the alert is sent again, under the same id, by the next claimer.
* **Principals and the audit trail.** A principal's token is stored only as its SHA-256
  (`PrincipalRecord.token_hash`); the secret never reaches the store. Names are unique among
  active principals: `add_principal` refuses a name in use and replaces a revoked one, so a
  revoked token never works again (its hash is gone or its row is revoked). `principal_by_token`
  returns active principals only. Audit entries are append-only — no method changes or deletes
  one except `prune`, which drops entries older than its cutoff with the runs (retention).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from tether.store.records import (
    ALERT_STATES,
    FINISHED_STATUSES,
    LIVE_MARK,
    ROLES,
    RUN_STATUSES,
    STEP_KINDS,
    STEP_STATUSES,
    TRUST_ACTION_STATUSES,
    WAIT_SEPARATOR,
    WORKER_LIVE_LEASES,
    AlertRecord,
    AuditRecord,
    Claim,
    CutCall,
    Heartbeat,
    NewAlert,
    NewRun,
    NewRunEvent,
    PrincipalRecord,
    QueueRecord,
    RingChangeRecord,
    RunEventRecord,
    RunRecord,
    ScheduleRecord,
    SignalRecord,
    SpendVerdict,
    SpendWindow,
    StepRecord,
    TrustActionRecord,
    WorkerRecord,
    alert_id,
    cut_call,
    encode_waiting_for,
    waiting_names,
)

__all__ = [
    "ALERT_STATES",
    "FINISHED_STATUSES",
    "LIVE_MARK",
    "ROLES",
    "RUN_STATUSES",
    "STEP_KINDS",
    "STEP_STATUSES",
    "TRUST_ACTION_STATUSES",
    "WAIT_SEPARATOR",
    "WORKER_LIVE_LEASES",
    "AlertRecord",
    "AuditRecord",
    "Claim",
    "CutCall",
    "Heartbeat",
    "NewAlert",
    "NewRun",
    "NewRunEvent",
    "PrincipalRecord",
    "QueueRecord",
    "RingChangeRecord",
    "RunEventRecord",
    "RunRecord",
    "ScheduleRecord",
    "SignalRecord",
    "SpendVerdict",
    "SpendWindow",
    "StepRecord",
    "Store",
    "TrustActionRecord",
    "WorkerRecord",
    "alert_id",
    "cut_call",
    "encode_waiting_for",
    "waiting_names",
]


@runtime_checkable
class Store(Protocol):
    """Durable state of runs, journals and mailboxes. All methods are coroutines and may be
    called from several event loops of one process (a worker loop, the App's sync portal)."""

    url: str

    async def open(self) -> None:
        """Connect and apply pending migrations (safe when several processes open at once)."""
        ...

    async def close(self) -> None: ...

    # --- client side -------------------------------------------------------------------------

    async def create_run(
        self, new: NewRun, *, owner: str | None = None, lease_seconds: float = 10.0
    ) -> tuple[RunRecord, int | None, bool]:
        """Insert a run unless one with this id exists.

        Returns ``(record, token, created)``. With `owner` the new run is inserted already
        claimed (``running``) by that owner and `token` is its fencing token; otherwise it is
        ``queued`` and `token` is ``None``. An existing run is returned unchanged with
        ``created=False`` (idempotent start) and no token.
        """
        ...

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        labels: dict[str, str] | None = None,
        limit: int = 50,
        id_contains: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: tuple[float, str] | None = None,
    ) -> list[RunRecord]:
        """Newest first (by `created_at`, then id). `id_contains`: the run id contains this
        text; `since` / `until`: created in ``[since, until)``; `before`: a cursor, the
        ``(created_at, id)`` of the last run of the previous page (times compared to the
        microsecond)."""
        ...

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        """The run's whole journal, ordered by `seq`, in one query."""
        ...

    async def load_run(self, run_id: str) -> tuple[RunRecord, list[StepRecord]] | None:
        """The run and its whole journal as of one moment (one snapshot, one round trip)."""
        ...

    async def send_signal(self, run_id: str, name: str, payload: Any) -> RunRecord | None:
        """Append to the mailbox; wake the run if it is ``waiting``. Returns the run after the
        change, or ``None`` if there is no such run. Signals to finished runs are stored but
        wake nothing."""
        ...

    async def list_signals(self, run_id: str) -> list[SignalRecord]: ...

    async def cancel_run(self, run_id: str, reason: str) -> RunRecord | None:
        """Cancel at once if ``queued`` or ``waiting``; mark ``cancel_requested`` if ``running``
        (the holder stops at its next write); no-op if finished. Returns the run after."""
        ...

    async def fork_run(
        self, source_id: str, from_seq: int, new: NewRun, *, supersede: str | None = None
    ) -> RunRecord:
        """Create `new` as a queued run whose journal is a copy of the source's entries with
        ``seq < from_seq`` that are ``completed``. With `supersede` (a reason), in the same
        transaction the source's unconsumed signals move to the new run and the source is
        cancelled with that reason (a run moved onto another workflow version)."""
        ...

    async def set_budget(self, run_id: str, budget: dict[str, Any] | None) -> RunRecord | None:
        """Replace the run's budget; a run ``waiting`` for the signal ``tether.budget`` (parked
        on its budget) becomes ``queued``."""
        ...

    async def prune(
        self,
        finished_before: float,
        *,
        status: str | None = None,
        workflow: str | None = None,
        exclude_statuses: Sequence[str] = (),
        exclude_workflows: Sequence[str] = (),
    ) -> int:
        """Delete finished runs (with journal, mailbox and events) finished before the time —
        only of `status` / `workflow` when given, never of the excluded ones — and, when no
        filter is given, audit entries and settled (delivered or failed) alerts recorded
        before it; returns how many runs were
        deleted. Rows another session holds are skipped (they go at the next prune)."""
        ...

    # --- worker side -------------------------------------------------------------------------

    async def claim_runs(
        self,
        owner: str,
        workflows: Sequence[tuple[str, str]],
        *,
        limit: int,
        lease_seconds: float,
        executing: Collection[str] | None = None,
    ) -> list[Claim]:
        """Claim up to `limit` runnable runs of the given ``(workflow, version)`` pairs (runs with
        ``version`` ``None`` match any version of the name and get pinned to it), oldest due
        first. With `executing` (the ids of the runs the caller executes now), runs leased to
        `owner` but not among them are claimed too, whatever their lease (see "Claims")."""
        ...

    async def claim_run(self, run_id: str, owner: str, *, lease_seconds: float) -> Claim | None:
        """Claim this one run if it is runnable now (as `claim_runs` would); else ``None``."""
        ...

    async def hold_liveness(self, owner: str) -> bool:
        """Take and keep the liveness lock of `owner` (a name ending with `LIVE_MARK`) until
        `drop_liveness` or the process ends; False when this store cannot (then the owner must
        claim under a name without the mark). See "Liveness"."""
        ...

    async def drop_liveness(self, owner: str) -> None:
        """Release the liveness lock `hold_liveness` took (a graceful stop)."""
        ...

    async def heartbeat(
        self,
        owner: str,
        lease_seconds: float,
        progress: Mapping[str, dict[str, Any] | None] | None = None,
        *,
        runs: Collection[str] | None = None,
    ) -> Heartbeat:
        """Extend the leases held by `owner` in one statement — all of them, or only those of
        `runs` — and record each listed run's current operation (`progress` by run id; ``None``
        clears it). An expired lease not taken over meanwhile is extended too."""
        ...

    async def next_wake(self) -> float | None:
        """The earliest `wake_at` among waiting or queued runs (for poll scheduling)."""
        ...

    async def wait_for_work(self, timeout: float) -> None:
        """Return when new work may be available (a notification) or after `timeout` seconds."""
        ...

    derives_step_events: bool
    """Whether this store reads a step's run events from its journal row (then the engine
    passes `write_step` ``events`` instead of appending step events)."""

    async def write_step(
        self, run_id: str, token: int, step: StepRecord, *, events: bool = False
    ) -> bool:
        """Insert or replace the journal entry ``(run_id, step.seq)``; fenced. With
        `derives_step_events` and ``events``, the row stands for the step's run events: its
        outcome (``step_completed``/``step_failed``), and its ``step_started`` unless that was
        appended as an event of its own."""
        ...

    async def consume_signal(
        self, run_id: str, token: int, step: StepRecord
    ) -> SignalRecord | None:
        """Take the oldest unconsumed signal named ``step.name`` and, in the same transaction,
        write `step` completed with the signal's payload as output. ``None`` when the mailbox
        holds no such signal (nothing written) or the write is fenced off."""
        ...

    async def consume_first_signal(
        self, run_id: str, token: int, step: StepRecord, names: Sequence[str]
    ) -> SignalRecord | None:
        """Take the oldest unconsumed signal whose name is one of `names` (the others stay in
        the mailbox) and, in the same transaction, write `step` completed with output
        ``{"name": <its name>, "payload": <its payload>}``. Idempotent at ``step.seq`` like
        `consume_signal`. ``None`` when none is there or the write is fenced off."""
        ...

    async def cancel_requests(self, owner: str) -> frozenset[str]:
        """Ids of the running runs leased by `owner` that have a cancel request pending (a
        cheap read a worker polls while it holds runs, between heartbeats)."""
        ...

    async def suspend_run(
        self,
        run_id: str,
        token: int,
        *,
        wake_at: float | None,
        waiting_for: str | Sequence[str] | None,
    ) -> str | None:
        """Release the lease and set the run ``waiting`` (or ``queued`` if a signal it waits
        for — any one of several names — is already there). Returns the new status, ``None``
        if fenced off."""
        ...

    finish_appends_event: bool
    """Whether `finish_run` appends the run's ``finished`` event in the transaction that ends
    it (then the engine does not append it after)."""

    async def finish_run(
        self, run_id: str, token: int, *, status: str, output: Any = None,
        error: dict[str, Any] | None = None,
    ) -> RunRecord | None:
        """Set a final status, release the lease; fenced. Returns the run's row as it ended
        (what `get_run` would read right after), ``None`` if fenced off. The cancel-request
        condition does not apply when `status` is ``cancelled``. With `finish_appends_event`,
        the run's ``finished`` event (keyed ``<run>:finished``) is appended with it."""
        ...

    async def release_run(self, run_id: str, token: int) -> bool:
        """Give a held run back (``queued``, no lease) without counting a recovery."""
        ...

    # --- worker registry -------------------------------------------------------------------------

    async def register_worker(self, worker: WorkerRecord) -> None:
        """Write the worker's row (`last_seen` = now), replacing any with its owner; forget
        rows of workers silent for over an hour."""
        ...

    async def check_schema(self) -> None:
        """Raise `SchemaTooNew` if a newer tether has since applied a migration that code this
        old must not run beside (store/migrate.py); a running worker asks once per lease
        period, because opening is not the only moment a store can become too new."""
        ...

    async def touch_worker(self, owner: str) -> bool:
        """Set the worker's `last_seen` to now; ``False`` when its row is gone (register
        again)."""
        ...

    async def remove_worker(self, owner: str) -> None:
        """Delete the worker's row (a graceful stop)."""
        ...

    async def list_workers(self) -> list[WorkerRecord]:
        """The live workers (see the module docstring), oldest first."""
        ...

    async def pending_versions(self) -> list[tuple[str, str | None, str, int]]:
        """``(workflow, version, status, count)`` of the ``queued`` and ``waiting`` runs, one
        query (what a starting worker checks against the live workers)."""
        ...

    # --- observe layer ---------------------------------------------------------------------------

    async def load_window(
        self, since: float, until: float | None = None
    ) -> list[tuple[RunRecord, list[StepRecord]]]:
        """Runs active in the window — created before `until` (``None``: now) and not finished
        before `since` — each with its whole journal, oldest run first (stats, cost reports).
        Step ``input`` and ``output`` are left out (``None``): reports do not read them."""
        ...

    async def label_spend(self, key: str, value: str, since: float) -> tuple[float, int]:
        """``(cost_usd, unpriced_calls)`` journaled since `since` by the steps of runs labelled
        ``key=value``, across every worker (spend limits). One query."""
        ...

    async def reserve_spend(
        self,
        run_id: str,
        token: int,
        reservation_id: str,
        cost_usd: float,
        windows: Sequence[SpendWindow],
    ) -> SpendVerdict | None:
        """Reserve `cost_usd` against every window atomically (see *Reservations* above).
        ``None``: reserved (or already reserved under this id: a retry); else the first window
        that would be passed, and nothing is reserved."""
        ...

    async def hold_usage(self, run_id: str, token: int, hold_id: str, usage: dict[str, Any]) -> None:
        """Record a budgeted run's call in flight (its worst case, `usage`) before it is sent;
        idempotent. See *Reservations* above."""
        ...

    async def release_hold(self, hold_id: str) -> None:
        """Drop a hold — only by the run's current holder (its call's usage is journaled, or the
        call failed). Idempotent."""
        ...

    async def lost_holds(self, run_id: str, token: int) -> list[dict[str, Any]]:
        """The usage of the run's holds left by earlier holders (workers that died or lost the
        run mid-call): calls that may have been billed but were never journaled."""
        ...

    async def cut_calls(
        self, *, run_id: str | None = None, since: float = 0.0, until: float | None = None
    ) -> list[CutCall]:
        """The calls earlier holders left in flight (see *Reservations* above): run holds and
        spend reservations whose token is not the run's current fencing token, made in
        ``[since, until)`` (``None``: now), of one run or of every run, oldest first. A call
        with both is listed once, with its hold's usage. Dead spend reservations are forgotten
        once older than every window checked; run holds stay until the run is pruned."""
        ...

    async def release_spend(self, reservation_id: str) -> None:
        """Drop a reservation (settled: its call's usage is journaled; or the call failed).
        Idempotent."""
        ...

    # --- run events ----------------------------------------------------------------------------

    async def append_run_events(self, events: Sequence[NewRunEvent]) -> None:
        """Append events in order, in one transaction; an event whose `key` is already stored
        is skipped (emitting twice stores once). Not fenced: events describe, they decide
        nothing."""
        ...

    async def read_run_events(
        self, run_id: str, *, after: int = 0, limit: int = 500
    ) -> list[RunEventRecord]:
        """The run's events with ``id > after``, oldest first."""
        ...

    # --- alerts (see "Alerts" above) --------------------------------------------------------

    async def record_alert(self, alert: NewAlert) -> AlertRecord | None:
        """Insert the alert ``pending``, due now; ``None`` (nothing written) when its key is
        stored or its series is within its quiet period."""
        ...

    async def claim_alerts(
        self, owner: str, *, limit: int, lease_seconds: float, only: str | None = None
    ) -> list[AlertRecord]:
        """Lease up to `limit` pending alerts that are due and not leased (or whose lease ran
        out) to `owner`, counting one attempt each; oldest first. `only`: that alert id alone."""
        ...

    async def settle_alert(
        self, alert_id: str, owner: str, *, delivered: bool, error: str | None = None,
        retry_at: float | None = None,
    ) -> bool:
        """Record the outcome of `owner`'s attempt and drop its lease: ``delivered``, else
        pending again from `retry_at`, else (``retry_at`` ``None``) ``failed``. ``False`` when
        `owner` no longer holds the lease (nothing written)."""
        ...

    async def list_alerts(
        self, *, kind: str | None = None, state: str | None = None,
        since: float | None = None, limit: int = 100,
    ) -> list[AlertRecord]:
        """Newest first; every given filter must match (`since`: created at or after)."""
        ...

    # --- metrics -------------------------------------------------------------------------------

    async def run_counts(self) -> list[tuple[str, str, int]]:
        """``(workflow, status, count)`` of every run in the store, one query."""
        ...

    async def queue_backlog(self, now: float) -> list[tuple[str | None, int, float | None]]:
        """``(queue, runs, oldest due)`` of the runs due by `now` and not claimed (``queued``,
        or ``waiting`` past their timer), by queue (``None``: outside any queue); the oldest
        due is when the longest-waiting of them became runnable."""
        ...

    # --- trust layer ---------------------------------------------------------------------------

    async def put_trust_action(self, action: TrustActionRecord) -> TrustActionRecord:
        """Insert the action unless one with its id exists; returns the stored one."""
        ...

    async def get_trust_action(self, action_id: str) -> TrustActionRecord | None: ...

    async def list_trust_actions(
        self,
        *,
        status: str | None = None,
        agent: str | None = None,
        category: str | None = None,
        run_id: str | None = None,
        outcome: str | None = None,
        since: float | None = None,
        limit: int = 10_000,
    ) -> list[TrustActionRecord]:
        """Newest first; every given filter must match (`since`: created at or after)."""
        ...

    async def decide_trust_action(
        self,
        action_id: str,
        *,
        status: str,
        decided_by: str | None,
        decided_at: float,
        final_args: dict[str, Any] | None,
        final_digest: str | None,
        edited: bool,
        reason: str | None,
        signal: tuple[str, Any] | None,
    ) -> TrustActionRecord | None:
        """Record a decision on a ``pending`` action and, in the same transaction, send
        ``signal`` (name, payload) to its run as `send_signal` would. ``None`` (nothing
        written) when the action is missing or no longer pending."""
        ...

    async def set_trust_outcome(self, action_id: str, outcome: str) -> None:
        """Record what happened when the tool ran (``ok``, ``failed``, ``not_run``)."""
        ...

    async def add_ring_change(self, change: RingChangeRecord) -> RingChangeRecord: ...

    # --- schedules (see ScheduleRecord for the rules) -------------------------------------------

    async def put_queue(self, queue: QueueRecord) -> None:
        """Declare or change a named queue (its limits apply to the next claims)."""
        ...

    async def acquire_rate(
        self, key: str, *, requests: int | None, tokens: int | None, window: float, cost: int,
        grant: str,
    ) -> float:
        """Grant one request of `cost` tokens under the rate limit `key` (at most `requests`
        requests and `tokens` tokens in any `window` seconds, across all workers): returns 0
        and records the grant under the id `grant`, or the seconds to wait before asking
        again."""
        ...

    async def settle_rate(self, grant: str) -> None:
        """The request of `grant` was answered: count it in its windows from now."""
        ...

    async def put_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord:
        """Insert or update a schedule's definition; returns it as stored."""
        ...

    async def get_schedule(self, name: str) -> ScheduleRecord | None: ...

    async def list_schedules(self, *, due_by: float | None = None) -> list[ScheduleRecord]:
        """Every schedule by name; with `due_by`, the unpaused ones due by then, soonest first."""
        ...

    async def set_schedule_paused(self, name: str, paused: bool) -> ScheduleRecord | None: ...

    async def delete_schedule(self, name: str) -> bool: ...

    async def advance_schedule(
        self, name: str, expected: float, next_at: float, *, fired_at: float | None = None,
        run_id: str | None = None,
    ) -> bool:
        """Move ``next_at`` from `expected` to `next_at` (and record the tick fired and its
        run); ``False`` when another caller moved it first."""
        ...

    async def list_ring_changes(
        self, *, agent: str | None = None, category: str | None = None
    ) -> list[RingChangeRecord]:
        """Oldest first."""
        ...

    # --- interfaces: principals and the audit trail -------------------------------------------

    async def add_principal(self, principal: PrincipalRecord) -> bool:
        """Insert the principal; ``False`` (nothing written) when an active principal has its
        name. A revoked principal of that name is replaced."""
        ...

    async def get_principal(self, name: str) -> PrincipalRecord | None:
        """The principal of that name, revoked or not."""
        ...

    async def principal_by_token(self, token_hash: str) -> PrincipalRecord | None:
        """The active principal whose token hashes to `token_hash`."""
        ...

    async def list_principals(self) -> list[PrincipalRecord]:
        """Every principal, revoked ones included, by name."""
        ...

    async def has_principals(self) -> bool:
        """Whether any principal is active (the server then requires authentication)."""
        ...

    async def revoke_principal(self, name: str, revoked_at: float) -> bool:
        """Revoke an active principal's token; ``False`` when there is none of that name."""
        ...

    async def add_audit(self, entry: AuditRecord) -> AuditRecord:
        """Append an entry; returns it with its id."""
        ...

    async def list_audit(
        self,
        *,
        principal: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Newest first; every given filter must match (`action` may end in ``*`` to match a
        prefix, e.g. ``run.*``; `since`: at or after)."""
        ...
