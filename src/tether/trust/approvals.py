"""Approval requests and the decisions on them: list, approve (optionally with edits), reject.

A decision is validated first — the reviewer is named, allowed for the category, and not the
identity that started the run; edited arguments satisfy the tool's JSON schema — and only then
recorded. Recording the decision and sending the run its ``approval:<id>`` signal happen in one
store transaction, so a decision is never recorded without reaching the run, or the reverse.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

from tether.errors import UserError
from tether.store.base import FINISHED_STATUSES, Store, TrustActionRecord
from tether.trust.digest import args_digest
from tether.trust.gate import CheckResult, approval_signal, decision_payload

REVIEW_STATUSES = ("pending", "approved", "rejected", "expired")


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True, slots=True)
class Approval:
    """A tool call sent to a human: what is proposed, why, and the context to judge it."""

    id: str
    run_id: str
    seq: int
    """Sequence number of the run's gate step for this call."""
    workflow: str
    agent: str
    tool: str
    category: str
    """The tool's risk category."""
    status: str
    """``pending``, ``approved``, ``rejected`` or ``expired``."""
    args: dict[str, Any]
    """The arguments the agent proposed."""
    digest: str
    """``sha256:…`` of the canonical JSON of `args`."""
    args_schema: dict[str, Any] | None
    checks: tuple[CheckResult, ...]
    reason: str | None
    """Why the call needs review while pending; the reviewer's reason once rejected."""
    context: dict[str, Any]
    """The reviewer's snapshot: ``steps``, ``totals``, ``node`` (latency vs usual p95),
    ``spend`` (vs ``budget``), ``versions`` (models, prompt hashes), ``history`` of the
    category (see `tether.trust.snapshot`)."""
    reviewers: list[str] | None
    """Who may decide; ``None``: anyone named except the run's starter."""
    started_by: str | None
    created_at: datetime
    expires_at: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    approved_args: dict[str, Any] | None
    """The arguments the tool runs with, once approved."""
    edited: bool

    @property
    def pending(self) -> bool:
        return self.status == "pending"

    @property
    def changes(self) -> dict[str, tuple[Any, Any]]:
        """What the reviewer changed: argument name → ``(proposed, approved)``."""
        if self.approved_args is None:
            return {}
        names = [*self.args, *(k for k in self.approved_args if k not in self.args)]
        return {
            name: (self.args.get(name), self.approved_args.get(name))
            for name in names
            if self.args.get(name) != self.approved_args.get(name)
        }

    @classmethod
    def from_record(cls, rec: TrustActionRecord) -> Approval:
        return cls(
            id=rec.id,
            run_id=rec.run_id,
            seq=rec.seq,
            workflow=rec.workflow,
            agent=rec.agent,
            tool=rec.tool,
            category=rec.category,
            status=rec.status,
            args=rec.args,
            digest=rec.digest,
            args_schema=rec.args_schema,
            checks=tuple(
                CheckResult(str(c.get("name")), bool(c.get("passed")), str(c.get("reason") or ""))
                for c in rec.checks or ()
            ),
            reason=rec.reason,
            context=rec.context or {},
            reviewers=rec.reviewers,
            started_by=rec.started_by,
            created_at=_ts(rec.created_at) or datetime.now(UTC),
            expires_at=_ts(rec.expires_at),
            decided_by=rec.decided_by,
            decided_at=_ts(rec.decided_at),
            approved_args=rec.final_args if rec.status == "approved" else None,
            edited=rec.edited,
        )


async def list_approvals(
    store: Store, *, status: str | None = "pending", limit: int = 100
) -> list[Approval]:
    """Approval requests, newest first (``status=None``: every review, decided or not).
    Pending requests of runs that have ended (cancelled) are left out."""
    if status is not None and status not in REVIEW_STATUSES:
        raise UserError(f"unknown approval status {status!r}; use {', '.join(REVIEW_STATUSES)}")
    statuses = [status] if status is not None else list(REVIEW_STATUSES)
    found: list[TrustActionRecord] = []
    for wanted in statuses:
        found.extend(await store.list_trust_actions(status=wanted, limit=limit))
    if status == "pending":
        # A cancelled (or otherwise ended) run leaves its request pending; nobody can decide it
        # any more, so it is not shown as waiting for a reviewer.
        found = [a for a in found if await _run_alive(store, a.run_id)]
    found.sort(key=lambda a: (a.created_at, a.id), reverse=True)
    return [Approval.from_record(a) for a in found[:limit]]


async def _run_alive(store: Store, run_id: str) -> bool:
    run = await store.get_run(run_id)
    return run is not None and run.status not in FINISHED_STATUSES


async def get_approval(store: Store, approval_id: str) -> Approval:
    action = await store.get_trust_action(approval_id)
    if action is None or action.status not in REVIEW_STATUSES:
        raise UserError(
            f"no approval request {approval_id!r} in this store; list them with "
            "`tether approvals`"
        )
    return Approval.from_record(action)


async def approve(
    store: Store, approval_id: str, *, reviewer: str, edits: Mapping[str, Any] | None = None
) -> Approval:
    """Approve the request, with `edits` (argument name → new value) replacing the proposed
    arguments; the run resumes and runs the tool once with exactly these arguments."""
    action = await _decidable(store, approval_id, reviewer)
    final = dict(action.args)
    if edits:
        if not isinstance(edits, dict):
            raise UserError(
                f"approval {approval_id}: edits must be a JSON object of argument names to "
                f"new values, got {type(edits).__name__}"
            )
        final.update(edits)
        _validate(action, dict(edits), final)
    digest = args_digest(final)
    return await _record(
        store, action, status="approved", reviewer=reviewer, final_args=final,
        final_digest=digest, edited=digest != action.digest, reason=None,
    )


async def reject(store: Store, approval_id: str, *, reviewer: str, reason: str) -> Approval:
    """Reject the request; `reason` goes back to the agent as the tool's result (or ends the
    run, as the policy says)."""
    if not reason or not reason.strip():
        raise UserError(
            f"approval {approval_id}: a rejection needs a reason (the agent reads it to revise)"
        )
    action = await _decidable(store, approval_id, reviewer)
    return await _record(
        store, action, status="rejected", reviewer=reviewer, final_args=None,
        final_digest=None, edited=False, reason=reason.strip(),
    )


async def _decidable(store: Store, approval_id: str, reviewer: str) -> TrustActionRecord:
    action = await store.get_trust_action(approval_id)
    if action is None or action.status not in REVIEW_STATUSES:
        raise UserError(
            f"no approval request {approval_id!r} in this store; list them with "
            "`tether approvals`"
        )
    if action.status != "pending":
        by = f" by {action.decided_by}" if action.decided_by else ""
        raise UserError(f"approval {approval_id} is already {action.status}{by}; nothing to do")
    if not reviewer or not reviewer.strip():
        raise UserError(f"approval {approval_id}: name the reviewer (reviewer=… / --as WHO)")
    if action.started_by is not None and reviewer == action.started_by:
        raise UserError(
            f"approval {approval_id}: {reviewer} started run {action.run_id} and cannot decide "
            "its own request; ask another reviewer"
        )
    if action.reviewers is not None and reviewer not in action.reviewers:
        raise UserError(
            f"approval {approval_id}: {reviewer} may not decide {action.category!r} actions; "
            f"allowed reviewers: {', '.join(action.reviewers) or 'none'}"
        )
    run = await store.get_run(action.run_id)
    if run is None or run.status in FINISHED_STATUSES:
        state = run.status if run is not None else "deleted"
        raise UserError(
            f"approval {approval_id}: run {action.run_id} already ended ({state}); the "
            "request can no longer be decided"
        )
    return action


def _validate(action: TrustActionRecord, edits: dict[str, Any], final: dict[str, Any]) -> None:
    schema = action.args_schema or {}
    properties = schema.get("properties")
    if isinstance(properties, dict):
        known = {str(name) for name in cast(dict[str, Any], properties)}
        unknown = sorted(set(edits) - known)
        if unknown:
            raise UserError(
                f"approval {action.id}: {action.tool} has no argument(s) {', '.join(unknown)}; "
                f"its arguments are {', '.join(sorted(known))}. The request stays pending."
            )
    if not schema:
        return
    import jsonschema  # only reviewers' edits need it; keep `import tether` light

    validator: Any = jsonschema.Draft202012Validator(schema)
    problems: list[Any] = sorted(validator.iter_errors(final), key=lambda e: list(e.path))
    if problems:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e.path) or '(arguments)'}: {e.message}"
            for e in problems[:5]
        )
        raise UserError(
            f"approval {action.id}: the edited arguments of {action.tool} do not match its "
            f"schema ({details}). Nothing was recorded; the request stays pending."
        )


async def _record(
    store: Store,
    action: TrustActionRecord,
    *,
    status: str,
    reviewer: str,
    final_args: dict[str, Any] | None,
    final_digest: str | None,
    edited: bool,
    reason: str | None,
) -> Approval:
    now = time.time()
    decided = replace(
        action,
        status=status,
        decided_by=reviewer,
        decided_at=now,
        final_args=final_args,
        final_digest=final_digest,
        edited=edited,
        reason=reason if reason is not None else action.reason,
    )
    payload = decision_payload(decided)
    stored = await store.decide_trust_action(
        action.id,
        status=status,
        decided_by=reviewer,
        decided_at=now,
        final_args=final_args,
        final_digest=final_digest,
        edited=edited,
        reason=reason,
        signal=(approval_signal(action.id), payload),
    )
    if stored is None:
        current = await store.get_trust_action(action.id)
        state = current.status if current is not None else "gone"
        by = f" by {current.decided_by}" if current is not None and current.decided_by else ""
        raise UserError(f"approval {action.id} was decided meanwhile ({state}{by}); nothing done")
    return Approval.from_record(stored)
