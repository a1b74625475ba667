"""Evidence: what past reviews and automatic actions say about each agent / category.

Every gated tool call is stored (see `TrustActionRecord`). From those rows this module counts
reviews, unedited approvals, edits, rejections and automatic actions with their later failures;
recommends widening or narrowing a ring; and, when the policy asks for it (``promote=``), widens
a ``review`` category to ``auto`` or narrows it back — recording each change with its evidence.

An action's *outcome* (did the tool then succeed?) is read from the run's journal and stored:
by the run's next gate (from the journal in memory), when the run ends (a run listener), or by
the report for anything still open.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tether.observe.names import TOOL_CALL_ID, TOOL_NAME
from tether.store.base import (
    FINISHED_STATUSES,
    RingChangeRecord,
    StepRecord,
    Store,
    TrustActionRecord,
)
from tether.trust.policy import Evidence, Policy, Ring

DECIDED = frozenset({"approved", "rejected", "expired"})
LAST_DECISIONS = 5


@dataclass(frozen=True, slots=True)
class CategoryStats:
    """Counts for one agent / category."""

    agent: str
    category: str
    reviews: int = 0
    """Decided reviews: approved + rejected + expired."""
    approved: int = 0
    unedited: int = 0
    """Approved exactly as the agent proposed."""
    edited: int = 0
    """Approved with a reviewer's edit."""
    rejected: int = 0
    expired: int = 0
    pending: int = 0
    denied: int = 0
    auto: int = 0
    """Actions that ran without review."""
    auto_failures: int = 0
    """Automatic actions whose tool then failed."""
    last: tuple[dict[str, Any], ...] = ()
    """The latest decisions, newest first: status, by, at, edited, reason."""

    @property
    def approval_rate(self) -> float | None:
        return self.approved / self.reviews if self.reviews else None

    @property
    def edit_rate(self) -> float | None:
        return self.edited / self.approved if self.approved else None

    @property
    def unedited_rate(self) -> float | None:
        return self.unedited / self.reviews if self.reviews else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["last"] = list(self.last)
        data["approval_rate"] = self.approval_rate
        data["edit_rate"] = self.edit_rate
        return data


def category_stats(
    agent: str, category: str, actions: Iterable[TrustActionRecord]
) -> CategoryStats:
    """Count `actions` (any order) of one agent / category."""
    counts: dict[str, int] = {}
    last: list[TrustActionRecord] = []
    for action in actions:
        status = action.status
        counts[status] = counts.get(status, 0) + 1
        if status == "approved":
            key = "edited" if action.edited else "unedited"
            counts[key] = counts.get(key, 0) + 1
        if status == "auto" and action.outcome == "failed":
            counts["auto_failures"] = counts.get("auto_failures", 0) + 1
        if status in DECIDED:
            last.append(action)
    last.sort(key=lambda a: a.decided_at or a.created_at, reverse=True)
    return CategoryStats(
        agent=agent,
        category=category,
        reviews=sum(counts.get(s, 0) for s in DECIDED),
        approved=counts.get("approved", 0),
        unedited=counts.get("unedited", 0),
        edited=counts.get("edited", 0),
        rejected=counts.get("rejected", 0),
        expired=counts.get("expired", 0),
        pending=counts.get("pending", 0),
        denied=counts.get("denied", 0),
        auto=counts.get("auto", 0),
        auto_failures=counts.get("auto_failures", 0),
        last=tuple(
            {
                "id": a.id,
                "status": a.status,
                "by": a.decided_by,
                "at": a.decided_at,
                "edited": a.edited,
                "reason": a.reason if a.status != "approved" else None,
            }
            for a in last[:LAST_DECISIONS]
        ),
    )


def eligible(stats: CategoryStats, evidence: Evidence) -> bool:
    rate = stats.unedited_rate
    return stats.reviews >= evidence.min_reviews and rate is not None and (
        rate >= evidence.min_unedited_rate
    )


def recommendation(ring: str | None, stats: CategoryStats, evidence: Evidence) -> str:
    """One line a human can act on: keep, widen or narrow the ring, and why."""
    if ring == "deny":
        return f"denied by policy ({stats.denied} call(s) refused)"
    if ring == "auto":
        if stats.auto_failures:
            return (
                f"narrow to review: {stats.auto_failures}/{stats.auto} automatic actions "
                "failed later"
            )
        return f"keep auto: {stats.auto} automatic action(s), none failed later"
    if eligible(stats, evidence):
        return f"eligible for auto: {stats.unedited}/{stats.reviews} approved unedited"
    return (
        f"keep review: {stats.unedited}/{stats.reviews} approved unedited (auto needs "
        f"{evidence.min_reviews} reviews, {evidence.min_unedited_rate:.0%} unedited)"
    )


# --- outcomes -------------------------------------------------------------------------------------


def _is_tool_step(step: StepRecord, action: TrustActionRecord) -> bool:
    if step.seq <= action.seq or step.kind in ("signal", "sleep", "value"):
        return False
    if step.name.startswith("trust."):
        return False
    meta = step.meta or {}
    if action.call_id and meta.get(TOOL_CALL_ID) is not None:
        return meta.get(TOOL_CALL_ID) == action.call_id
    return meta.get(TOOL_NAME) == action.tool or action.tool in step.name


async def settle_from_journal(
    store: Store, actions: list[TrustActionRecord], journal: Iterable[StepRecord]
) -> list[TrustActionRecord]:
    """Record the outcomes `journal` (a live run's, in memory) already shows; returns the
    actions still without one."""
    steps = list(journal)
    open_: list[TrustActionRecord] = []
    for action in actions:
        outcome = outcome_in_journal(action, steps)
        if outcome is None:
            open_.append(action)
        else:
            await store.set_trust_outcome(action.id, outcome)
    return open_


def outcome_in_journal(action: TrustActionRecord, steps: Iterable[StepRecord]) -> str | None:
    """``ok`` / ``failed`` once the action's tool step (the first later step of that tool, by
    call id, else by tool name) has an outcome in `steps`; ``None`` until then."""
    step = next((s for s in steps if _is_tool_step(s, action)), None)
    if step is None or step.status not in ("completed", "failed"):
        return None
    return "ok" if step.status == "completed" else "failed"


async def settle_outcomes(
    store: Store, actions: list[TrustActionRecord]
) -> list[TrustActionRecord]:
    """Fill in the outcome of actions that ran (``auto``/``approved``) and whose outcome is not
    known yet, from their run's journal (``not_run`` when the run ended without calling the
    tool). Returns the actions with outcomes filled in where known."""
    journals: dict[str, list[StepRecord]] = {}
    settled: list[TrustActionRecord] = []
    for action in actions:
        if action.outcome is not None or action.status not in ("auto", "approved"):
            settled.append(action)
            continue
        steps = journals.get(action.run_id)
        if steps is None:
            steps = journals[action.run_id] = await store.load_steps(action.run_id)
        outcome = outcome_in_journal(action, steps)
        if outcome is None and not any(_is_tool_step(s, action) for s in steps):
            run = await store.get_run(action.run_id)
            if run is None or run.status in FINISHED_STATUSES:
                outcome = "not_run"
        if outcome is not None:
            await store.set_trust_outcome(action.id, outcome)
            action = replace(action, outcome=outcome)
        settled.append(action)
    return settled


# --- rings ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RingState:
    """The ring in force for one agent / category and how it got there."""

    ring: Ring
    base: Ring
    """What the policy says before evidence."""
    change: RingChangeRecord | None = None
    """The ring change made now (promotion or demotion), if any."""
    history: list[RingChangeRecord] = field(default_factory=list[RingChangeRecord])


async def current_ring(
    store: Store, policy: Policy, agent: str, category: str, *, reconsider: bool = True
) -> RingState:
    """The ring for this agent / category: the policy's, widened to ``auto`` by recorded
    evidence when ``promote`` is set. With `reconsider`, first promote a category whose
    evidence now suffices, or narrow a promoted one after a rejection or a failed action."""
    base = policy.ring(category, agent=agent)
    if base != "review" or policy.promote is None:
        return RingState(ring=base, base=base)
    history = await store.list_ring_changes(agent=agent, category=category)
    last = history[-1] if history else None
    ring: Ring = "auto" if last is not None and last.to_ring == "auto" else "review"
    if not reconsider:
        return RingState(ring=ring, base=base, history=history)
    since = last.created_at if last is not None else None
    if ring == "auto":
        # Checked before every call of a promoted category: two indexed lookups, not a scan of
        # every automatic action since the promotion. Outcomes are recorded as runs call their
        # tools (the gate) and end (a run listener); the full count is read only to demote.
        rejected = await store.list_trust_actions(
            status="rejected", agent=agent, category=category, since=since, limit=1
        )
        failed = await store.list_trust_actions(
            status="auto", outcome="failed", agent=agent, category=category, since=since, limit=1
        )
        if not (rejected or failed):
            return RingState(ring="auto", base=base, history=history)
        actions = await store.list_trust_actions(agent=agent, category=category, since=since)
        stats = category_stats(agent, category, actions)
        parts: list[str] = []
        if stats.rejected:
            parts.append(f"{stats.rejected} rejection(s)")
        if stats.auto_failures:
            parts.append(f"{stats.auto_failures}/{stats.auto} automatic action(s) failed")
        reason = "narrowed to review: " + " and ".join(parts) + " since promotion"
        change = await _record(store, agent, category, "auto", "review", reason, stats)
        return RingState(ring="review", base=base, change=change, history=[*history, change])
    actions = await store.list_trust_actions(agent=agent, category=category, since=since)
    stats = category_stats(agent, category, actions)
    if eligible(stats, policy.promote):
        reason = f"promoted to auto: {stats.unedited}/{stats.reviews} approved unedited"
        change = await _record(store, agent, category, "review", "auto", reason, stats)
        return RingState(ring="auto", base=base, change=change, history=[*history, change])
    return RingState(ring="review", base=base, history=history)


async def _record(
    store: Store,
    agent: str,
    category: str,
    from_ring: Ring,
    to_ring: Ring,
    reason: str,
    stats: CategoryStats,
) -> RingChangeRecord:
    latest = await store.list_ring_changes(agent=agent, category=category)
    if latest and latest[-1].to_ring == to_ring:  # a concurrent gate made this change already
        return latest[-1]
    return await store.add_ring_change(
        RingChangeRecord(
            agent=agent,
            category=category,
            from_ring=from_ring,
            to_ring=to_ring,
            reason=reason,
            evidence=stats.to_dict(),
            created_at=time.time(),
        )
    )


# --- the report -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustReportRow:
    """`tether trust` for one agent / category."""

    agent: str
    category: str
    ring: str | None
    """The ring in force; without a policy on the reporting App, the ring of the latest
    action or ring change."""
    stats: CategoryStats
    """Counts over all recorded actions."""
    recommendation: str
    """Keep, widen or narrow, and the evidence (counted since the last ring change)."""
    changes: list[RingChangeRecord]
    """Ring changes of this agent / category, oldest first."""


async def trust_report(store: Store, policy: Policy | None) -> list[TrustReportRow]:
    """Per agent / category: reviews, unedited approvals, edits, rejections, automatic actions
    and their later failures, and a recommendation. Reads every recorded action once."""
    actions = await settle_outcomes(store, await store.list_trust_actions(limit=1_000_000))
    # A request whose run ended undecided (cancelled) is not pending any more: leave it out.
    ended: set[str] = set()
    for run_id in {a.run_id for a in actions if a.status == "pending"}:
        run = await store.get_run(run_id)
        if run is None or run.status in FINISHED_STATUSES:
            ended.add(run_id)
    actions = [a for a in actions if not (a.status == "pending" and a.run_id in ended)]
    groups: dict[tuple[str, str], list[TrustActionRecord]] = {}
    for action in actions:
        groups.setdefault((action.agent, action.category), []).append(action)
    changes = await store.list_ring_changes()
    for change in changes:
        groups.setdefault((change.agent, change.category), [])
    evidence = policy.promote if policy is not None and policy.promote else Evidence()
    rows: list[TrustReportRow] = []
    for (agent, category), group in sorted(groups.items()):
        history = [c for c in changes if c.agent == agent and c.category == category]
        ring: str | None
        if policy is not None:
            ring = (await current_ring(store, policy, agent, category, reconsider=False)).ring
        else:
            # No policy here (a bare CLI client): the ring the latest action was gated under.
            latest = max(group, key=lambda a: a.created_at, default=None)
            ring = history[-1].to_ring if history else (latest.ring if latest else None)
        since = history[-1].created_at if history else None
        recent = [a for a in group if since is None or a.created_at >= since]
        rows.append(
            TrustReportRow(
                agent=agent,
                category=category,
                ring=ring,
                stats=category_stats(agent, category, group),
                recommendation=recommendation(ring, category_stats(agent, category, recent),
                                              evidence),
                changes=history,
            )
        )
    return rows
