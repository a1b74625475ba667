"""What the client API returns about runs and their steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tether.engine.budget import ZERO, Usage
from tether.engine.ledger import OVERSHOOT
from tether.store.base import CutCall, RunRecord, StepRecord, Store

DEGRADED = "tether.degraded"
"""Step meta key of a journal entry recording that the run carried on past a failed part
(an optional node skipped, a fallback taken): its value says how (``skipped``, ``fallback``)."""

STARTED_BY_LABEL = "tether.started_by"
"""The run label that records who started the run (an internal ``tether.*`` label: `RunInfo`
shows it as `RunInfo.started_by`, never among the user's labels)."""

INTERNAL_LABEL_PREFIX = "tether."


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True, slots=True)
class StepInfo:
    """One journal entry of a run, as a user reads it."""

    seq: int
    """Sequence number (1 is the first operation of the run)."""
    name: str
    kind: str
    """``step``, ``sleep``, ``signal`` or ``value``."""
    status: str
    """``completed``, ``failed``, ``retrying`` or ``waiting``."""
    attempts: int
    input: Any
    output: Any
    error: dict[str, Any] | None
    started_at: datetime | None
    finished_at: datetime | None
    wake_at: datetime | None
    usage: Usage
    meta: dict[str, Any]

    @property
    def duration(self) -> float | None:
        """Seconds from the start of the first attempt to the outcome."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @classmethod
    def from_record(cls, rec: StepRecord) -> StepInfo:
        return cls(
            seq=rec.seq,
            name=rec.name,
            kind=rec.kind,
            status=rec.status,
            attempts=rec.attempts,
            input=rec.input,
            output=rec.output,
            error=rec.error,
            started_at=_ts(rec.started_at),
            finished_at=_ts(rec.finished_at),
            wake_at=_ts(rec.wake_at),
            usage=Usage.from_dict(rec.usage),
            meta=rec.meta or {},
        )


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A run and its journal."""

    id: str
    workflow: str
    version: str | None
    status: str
    """``queued``, ``running``, ``waiting``, ``succeeded``, ``failed``, ``refused`` or
    ``cancelled``."""
    input: Any
    output: Any
    error: dict[str, Any] | None
    labels: dict[str, str]
    """The user's labels (cost attribution); tether's own ``tether.*`` labels are left out."""
    steps: list[StepInfo]
    usage: Usage
    budget: dict[str, Any] | None
    parent_id: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    wake_at: datetime | None
    waiting_for: str | None
    recoveries: int
    """How many times a worker took this run over after its previous worker stopped."""
    lease_owner: str | None
    lease_expires: datetime | None
    progress: dict[str, Any] | None = None
    """For a running run: the operation it is in as of the last heartbeat (``seq``, ``name``,
    ``kind``, ``node``, ``started_at``)."""
    started_by: str | None = None
    """Who started the run: the authenticated principal, ``--as``, or the OS login name."""
    tether_labels: dict[str, str] = field(default_factory=dict[str, str])
    """tether's own ``tether.*`` labels (who started the run, the schedule and tick that
    started it…), kept apart from the user's `labels`."""
    cut: list[CutCall] = field(default_factory=list[CutCall])
    """Calls this run's earlier holders had in flight when they died or lost it (a SIGKILL, a
    pause past the lease): maybe sent and billed, never journaled, sent again by the next
    holder. Known only for runs with a budget or a spend limit (their calls are held in the
    store before they are sent); not in `usage`."""

    @property
    def cut_usage(self) -> Usage:
        """The worst case of the `cut` calls: what the provider may have billed on top of
        `usage`."""
        return self.cut_usage_of()

    def cut_usage_of(self, seq: int | None = None) -> Usage:
        """The worst case of the `cut` calls (at journal position `seq`, if given)."""
        total = ZERO
        for call in self.cut:
            if seq is None or call.seq == seq:
                total = total + Usage.from_dict(call.usage)
        return total

    def cut_sends(self, seq: int) -> int:
        """How many times workers that died or lost the run sent the step at `seq` without
        journaling it (not in the step's `attempts`): it was sent ``attempts + cut_sends``
        times in all."""
        return sum(1 for call in self.cut if call.seq == seq)

    @property
    def child_of(self) -> str | None:
        """The parent of a child run (`Context.run_child`); ``None`` for other runs (a fork's
        `parent_id` names the run it was forked from)."""
        parent = self.parent_id
        if parent is None or not self.id.startswith(parent + "."):
            return None
        return parent if self.id[len(parent) + 1:].isdigit() else None

    @property
    def children(self) -> list[str]:
        """The ids of the child runs this run started, in the order it started them."""
        return [s.output for s in self.steps
                if s.kind == "child" and s.status == "completed" and isinstance(s.output, str)]

    @property
    def tokens(self) -> int:
        return self.usage.tokens

    @property
    def cost_usd(self) -> float:
        return self.usage.cost_usd

    @property
    def overshoot(self) -> dict[str, float]:
        """What the run's steps spent beyond their reservations (``cost_usd``, ``tokens``):
        responses larger than the worst case reserved for them. Empty when none did."""
        total: dict[str, float] = {}
        for step in self.steps:
            over: dict[str, Any] = step.meta.get(OVERSHOOT) or {}
            for key, value in over.items():
                total[key] = total.get(key, 0.0) + float(value)
        return total

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed", "refused", "cancelled")

    @property
    def degraded(self) -> list[dict[str, Any]]:
        """What the run did without: one entry per skipped or replaced part (``node``, ``how``,
        ``error``), in journal order. Empty for a run that degraded nothing."""
        found: list[dict[str, Any]] = []
        for step in self.steps:
            if step.meta.get(DEGRADED) and step.status == "completed":
                output: Any = step.output
                record: dict[str, Any] = (
                    {**output} if isinstance(output, dict) else {"step": step.name}
                )
                found.append(record)
        return found

    @classmethod
    def from_records(
        cls, run: RunRecord, steps: list[StepRecord], cut: list[CutCall] | None = None
    ) -> RunInfo:
        infos = [StepInfo.from_record(s) for s in steps]
        usage = Usage()
        for s in infos:
            usage = usage + s.usage
        return cls(
            id=run.id,
            workflow=run.workflow,
            version=run.version,
            status=run.status,
            input=run.input,
            output=run.output,
            error=run.error,
            labels={
                k: v for k, v in run.labels.items() if not k.startswith(INTERNAL_LABEL_PREFIX)
            },
            tether_labels={
                k: v for k, v in run.labels.items() if k.startswith(INTERNAL_LABEL_PREFIX)
            },
            steps=infos,
            usage=usage,
            budget=run.budget,
            parent_id=run.parent_id,
            created_at=_ts(run.created_at) or datetime.now(UTC),
            updated_at=_ts(run.updated_at) or datetime.now(UTC),
            started_at=_ts(run.started_at),
            finished_at=_ts(run.finished_at),
            wake_at=_ts(run.wake_at),
            waiting_for=run.waiting_for,
            recoveries=run.recoveries,
            lease_owner=run.lease_owner,
            lease_expires=_ts(run.lease_expires),
            progress=run.progress,
            started_by=run.labels.get(STARTED_BY_LABEL),
            cut=list(cut) if cut else [],
        )


async def cut_calls(store: Store, run: RunRecord) -> list[CutCall]:
    """The calls `run`'s earlier holders left in flight (`Store.cut_calls`); no read for a run
    claimed once at most (fencing token 1: there was no earlier holder)."""
    return await store.cut_calls(run_id=run.id) if run.fencing > 1 else []
