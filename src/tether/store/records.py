"""The records the store keeps and returns — runs, steps, signals, claims, schedules, alerts,
trust actions, principals — and the constants that name their states. The rules every store
keeps are in `tether.store.base`, with the `Store` protocol; this module is only the data."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

RUN_STATUSES = ("queued", "running", "waiting", "succeeded", "failed", "refused", "cancelled")
FINISHED_STATUSES = frozenset({"succeeded", "failed", "refused", "cancelled"})

STEP_KINDS = ("step", "sleep", "signal", "value")
"""``step`` a function call; ``sleep`` a durable timer; ``signal`` a signal wait; ``value`` a
recorded ``ctx.now()`` / ``ctx.uuid()``."""

WAIT_SEPARATOR = "|"
"""Joins the names of a wait for several signals in `RunRecord.waiting_for`. `send_signal`
wakes a run when the name equals `waiting_for` or is one of its ``|``-separated parts; a single
name that itself contains ``|`` can at worst be woken spuriously (the run finds no signal and
waits again), never missed."""


def encode_waiting_for(names: str | Sequence[str] | None) -> str | None:
    """The `waiting_for` column value for one name or several."""
    if names is None or isinstance(names, str):
        return names
    return WAIT_SEPARATOR.join(names)


def waiting_names(names: str | Sequence[str] | None) -> list[str]:
    """The names whose arrival in the mailbox makes a suspension wake at once."""
    if names is None:
        return []
    return [names] if isinstance(names, str) else list(names)


STEP_STATUSES = ("completed", "failed", "retrying", "waiting")
"""``retrying``: attempts failed so far (journaled so a crash does not reset the count);
``waiting``: a sleep or signal wait not yet over."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run as stored."""

    id: str
    workflow: str
    version: str | None
    """The workflow version the run is pinned to; ``None`` until a worker with the workflow
    claims it when the starter did not know the workflow."""
    status: str
    input: Any
    output: Any
    error: dict[str, Any] | None
    labels: dict[str, str]
    budget: dict[str, Any] | None
    parent_id: str | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    wake_at: float | None
    """When a waiting (or delayed queued) run becomes runnable; ``None`` means only a signal
    wakes it."""
    waiting_for: str | None
    """The signal name a waiting run waits for, if any; a wait for the first of several
    signals lists their names joined by ``|`` (``"approve|reject"``)."""
    lease_owner: str | None
    lease_expires: float | None
    fencing: int
    recoveries: int
    """How many times a worker took the run over after its lease expired (a crashed, paused or
    cut-off holder). Progressing runs are taken over too; poison runs are told by
    `Claim.stalls`, not by this count."""
    cancel_requested: bool
    progress: dict[str, Any] | None = None
    """For a running run: the operation it is in (``seq``, ``name``, ``kind``, ``node``,
    ``started_at``), as of its worker's last heartbeat."""


@dataclass(frozen=True, slots=True)
class NewRunEvent:
    """An event to append to a run's event stream."""

    run_id: str
    kind: str
    at: float
    seq: int | None = None
    """The journal entry the event is about, if any."""
    data: dict[str, Any] | None = None
    key: str | None = None
    """Stable identity: appending an event whose key is stored already does nothing. ``None``
    for live-only events (model text deltas), which are appended every time."""


@dataclass(frozen=True, slots=True)
class RunEventRecord:
    """One event of a run's stream; `id` increases in the order events were appended."""

    id: int
    run_id: str
    kind: str
    at: float
    seq: int | None
    data: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One journal entry: the outcome of the operation with sequence number `seq`."""

    run_id: str
    seq: int
    name: str
    kind: str
    status: str
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 1
    started_at: float | None = None
    finished_at: float | None = None
    wake_at: float | None = None
    usage: dict[str, Any] | None = None
    """What the step spent: ``llm_calls``, ``tool_calls``, ``input_tokens``, ``output_tokens``,
    ``cost_usd``… summed by the budget ledger."""
    meta: dict[str, Any] | None = None
    """Free-form attributes from upper layers (node, model, fingerprint…)."""


@dataclass(frozen=True, slots=True)
class SignalRecord:
    """One message in a run's mailbox."""

    id: int
    run_id: str
    name: str
    payload: Any
    created_at: float
    consumed_seq: int | None


@dataclass(frozen=True, slots=True)
class NewRun:
    """What `create_run` needs to insert a run."""

    id: str
    workflow: str
    version: str | None
    input: Any
    labels: dict[str, str] = field(default_factory=dict[str, str])
    budget: dict[str, Any] | None = None
    parent_id: str | None = None
    wake_at: float | None = None
    """Start no earlier than this time (``None``: now)."""
    queue: str | None = None
    """The named queue the run waits in for capacity (``None``: claimed as soon as due)."""
    queue_key: str | None = None
    """The run's key in its queue (a tenant): the queue's ``per_key`` limit counts per key."""
    priority: int = 0
    """Higher first among the queued runs of one queue."""


@dataclass(frozen=True, slots=True)
class QueueRecord:
    """A named queue's limits, enforced by every worker's claim (see store/queues_sql.py)."""

    name: str
    concurrency: int | None = None
    """Running runs of the queue at most."""
    per_key: int | None = None
    """Running runs of one key at most."""
    rate_count: int | None = None
    """At most this many runs first started ..."""
    rate_seconds: float | None = None
    """... in any window of this many seconds."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A run this worker now holds under `token`."""

    run: RunRecord
    token: int
    recovered: bool
    """True when the claim took over an expired lease (a crashed or paused worker)."""
    stalls: int = 0
    """How many holders in a row lost the run at its current journal position (taken over with
    no step journaled since they claimed it): evidence the run kills its workers there."""
    journal: list[StepRecord] | None = None
    """The run's journal when the store knows it at the claim: ``[]`` for a run starting, the
    entries when it loaded them with the claim (one query for a whole batch of claims instead
    of one per run). ``None``: the engine loads it."""

    @property
    def has_journal(self) -> bool:
        """False when the run is known to have no journal entries (a run starting)."""
        return self.journal is None or bool(self.journal)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What a heartbeat learned about the runs the worker holds."""

    renewed: int
    """How many leases were extended."""
    cancel_requested: frozenset[str]
    """Held runs with a pending cancel request."""
    renewed_ids: frozenset[str] = frozenset()
    """The runs whose leases were extended: a run taken over meanwhile is not among them, so
    its holder must not count on a new deadline for it."""


LIVE_MARK = "~live"
"""The suffix of an owner that holds the store's liveness lock (see "Liveness" above)."""

WORKER_LIVE_LEASES = 3.0
"""A worker counts as live while its `last_seen` is within this many of its lease periods."""


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A worker process in the registry, and the workflow versions it serves."""

    owner: str
    """The worker's lease owner (``name:random``), unique per process."""
    name: str
    host: str
    pid: int
    started_at: float
    last_seen: float
    """When the worker last said it is alive (the store's clock)."""
    lease_seconds: float
    workflows: tuple[tuple[str, str], ...]
    """``(workflow, version)`` pairs the worker claims runs of."""


@dataclass(frozen=True, slots=True)
class SpendWindow:
    """A label spend limit as the store checks it: at most `max_usd` journaled since `since`
    plus reserved by calls in flight, over every run labelled ``label=value``."""

    label: str
    value: str
    max_usd: float
    since: float
    """The window's start (epoch seconds): steps finished before it no longer count."""
    description: str = ""
    """How the limit reads to a user (``tenant=acme at most $5 per day``), for messages."""

    @property
    def key(self) -> str:
        """The limit key reservations are held under (one per label value, whatever the
        window: a call in flight counts in every window of its label)."""
        return f"label:{self.label}={self.value}"


@dataclass(frozen=True, slots=True)
class SpendVerdict:
    """Why a reservation did not fit: the first window it would have passed."""

    window: SpendWindow
    spent: float
    """USD journaled in the window."""
    reserved: float
    """USD held by other calls in flight (live holders only)."""
    unpriced_calls: int
    """Unpriced calls journaled in the window (not in `spent`)."""


@dataclass(frozen=True, slots=True)
class CutCall:
    """A call a run's earlier holder had in flight when it died or lost the run: its run hold
    (`Store.hold_usage`) or spend reservation was never released. It may have been sent and
    billed; it was never journaled (the next holder sent it again)."""

    run_id: str
    seq: int
    """The journal position of the call (the step the next holder ran again)."""
    token: int
    """The fencing token of the holder that lost it."""
    usage: dict[str, Any]
    """Its worst case as reserved: a run hold's whole `Usage` (calls, tokens, cost); a spend
    reservation's cost alone (``llm_calls``, ``cost_usd``)."""
    created_at: float
    """When it was reserved, just before it was sent."""


def cut_call(
    hold_id: str, run_id: str, token: int, usage: dict[str, Any], created_at: float
) -> CutCall:
    """A `CutCall` from a stored row (its seq is in its id, ``<run id>:<seq>:<token>``)."""
    seq = int(hold_id.rsplit(":", 2)[1])
    return CutCall(run_id, seq, int(token), dict(usage), float(created_at))


# --- schedules ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """A workflow started on a cron expression, as stored.

    Rules every implementation keeps: `put_schedule` is an upsert by `name` that keeps
    ``paused``, ``last_at`` and ``last_run_id``, and keeps ``next_at`` unless the cron
    expression or the time zone changed; `advance_schedule` moves ``next_at`` only from the
    value the caller read (compare-and-set), so of several workers that saw a tick due one
    advances it. Exactly one run per tick comes from the run id, which the engine derives from
    the tick (`create_run` is idempotent), not from this table.
    """

    name: str
    cron: str
    timezone: str
    workflow: str
    input: dict[str, Any]
    labels: dict[str, str]
    overlap: str
    """``skip`` | ``queue`` | ``allow``: what a tick does while the previous run is unfinished."""
    catchup: str
    """``latest`` | ``all`` | ``none``: what ticks missed while no worker ran start."""
    next_at: float
    paused: bool = False
    last_at: float | None = None
    last_run_id: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


# --- alerts ------------------------------------------------------------------------------------

ALERT_STATES = ("pending", "delivered", "failed")
"""``pending`` not delivered yet (retried); ``delivered`` a 2xx answer was recorded;
``failed`` given up after the configured attempts."""


def alert_id(key: str) -> str:
    """The alert's id, derived from its occurrence key: the same occurrence recorded by two
    workers has one id, which is the idempotency key receivers see."""
    return "al_" + hashlib.sha256(key.encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class NewAlert:
    """An occurrence to record (see "Alerts" above)."""

    key: str
    """One occurrence of the condition: recording the same key again does nothing."""
    kind: str
    """``stuck``, ``change``, ``spend``, ``unserved`` or ``test``."""
    subject: str
    """What it is about: a run id, a node, ``tenant=acme``, ``workflow v2``."""
    summary: str
    """One line a person reads on the page."""
    details: dict[str, Any] | None = None
    series: str | None = None
    """The condition the occurrence belongs to (default: `key`)."""
    quiet_seconds: float = 0.0
    """Record nothing while an alert of the same series is younger than this."""

    @property
    def id(self) -> str:
        return alert_id(self.key)


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert as stored, with its delivery state."""

    id: str
    key: str
    series: str
    kind: str
    subject: str
    summary: str
    details: dict[str, Any] | None
    created_at: float
    state: str
    attempts: int
    """Delivery attempts claimed so far (a worker that died mid-attempt counts one)."""
    next_attempt_at: float
    lease_owner: str | None = None
    lease_expires: float | None = None
    last_error: str | None = None
    delivered_at: float | None = None


# --- trust layer -------------------------------------------------------------------------------

TRUST_ACTION_STATUSES = ("auto", "denied", "pending", "approved", "rejected", "expired")
"""``auto`` ran without review; ``denied`` refused by policy; ``pending`` waits for a reviewer;
``approved`` / ``rejected`` decided by a reviewer; ``expired`` no decision in time."""


@dataclass(frozen=True, slots=True)
class TrustActionRecord:
    """One gated tool call as stored: what was asked, which ring applied, how it was decided."""

    id: str
    """``<run id>-<seq of the gate step>``: stable across replays, so creation is idempotent."""
    run_id: str
    seq: int
    workflow: str
    agent: str
    tool: str
    category: str
    ring: str
    status: str
    args: dict[str, Any]
    digest: str
    """SHA-256 of the canonical JSON of `args`."""
    created_at: float
    args_schema: dict[str, Any] | None = None
    checks: list[dict[str, Any]] | None = None
    context: dict[str, Any] | None = None
    """The reviewer's context snapshot (steps, latency vs p95, spend vs budget, versions…)."""
    reviewers: list[str] | None = None
    """Who may decide; ``None``: any named reviewer."""
    started_by: str | None = None
    call_id: str | None = None
    reason: str | None = None
    """Why the action was sent to review / denied, or the reviewer's rejection reason."""
    expires_at: float | None = None
    decided_by: str | None = None
    decided_at: float | None = None
    final_args: dict[str, Any] | None = None
    """The arguments the tool runs with (a reviewer's edit, or `args`)."""
    final_digest: str | None = None
    edited: bool = False
    outcome: str | None = None
    """What happened when the tool ran: ``ok``, ``failed``, ``not_run``; ``None`` until known."""


@dataclass(frozen=True, slots=True)
class RingChangeRecord:
    """A category's ring widened or narrowed for one agent, with the evidence."""

    agent: str
    category: str
    from_ring: str
    to_ring: str
    reason: str
    evidence: dict[str, Any] | None
    created_at: float
    id: int | None = None



# --- interfaces: principals and the audit trail -------------------------------------------------

ROLES = ("viewer", "operator", "reviewer", "admin")
"""``viewer`` reads; ``operator`` starts, signals, cancels, forks and raises budgets;
``reviewer`` decides approvals (optionally only some risk categories); ``admin`` manages tokens
and the trust policy, and may do everything else."""


@dataclass(frozen=True, slots=True)
class PrincipalRecord:
    """A named identity allowed to use the API and dashboard, as stored."""

    name: str
    roles: list[str]
    token_hash: str
    """``sha256:<hex>`` of the token; the secret is shown once, when created, and never stored."""
    created_at: float
    categories: list[str] | None = None
    """Risk categories a reviewer may decide; ``None``: every category."""
    created_by: str | None = None
    revoked_at: float | None = None
    """When the token was revoked; ``None`` while it works."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One mutation attempted through the API, the dashboard or the CLI."""

    at: float
    principal: str
    """Who: the authenticated principal (or the OS login / ``--as`` name on the CLI)."""
    action: str
    """``run.start``, ``run.signal``, ``run.cancel``, ``run.fork``, ``run.budget``,
    ``approval.approve``, ``approval.edit``, ``approval.reject``, ``policy.change``,
    ``token.create``, ``token.revoke``…"""
    target: str | None
    """What it was done to: a run id, an approval id, a principal name."""
    outcome: str
    """``ok``; ``denied`` (the role or rule forbade it); ``failed`` (refused or an error)."""
    detail: dict[str, Any] | None = None
    """What was asked (signal name, reason, edited fields…) and, unless ok, why it failed."""
    via: str | None = None
    """``api``, ``dashboard`` or ``cli``."""
    id: int | None = None
