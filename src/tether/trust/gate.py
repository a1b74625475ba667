"""The gate every tool call passes before it runs: `authorize`.

This is the trust side of the seam with the agents layer. The agents layer builds a
`ToolCallRequest` (`tether.agents.gate`, re-exported here) and asks the App executing the run,
which calls `authorize`; the tool runs only when the returned `Authorization` says ``run`` —
with the authorization's `args`, which may be a reviewer's edit — as its own journaled step
right after. ``reject`` and ``deny`` reasons go back to the model as the tool's result.

Everything here is journaled, so a replay decides the same way and nothing happens twice:

1. the step ``trust.gate`` decides the ring (policy, per-agent overrides, evidence, self-checks)
   and stores the action — for ``review`` an approval request with its context snapshot. Its
   id is ``<run id>-<seq>``, so a step re-run after a crash finds the request it already made;
2. for ``review``, ``ctx.wait_for_signal("approval:<id>")`` suspends the run (no worker held)
   until `tether.App.approve` / `reject` records the decision and sends the signal in one
   transaction; a configured expiry turns into the step ``trust.expire``;
3. the decision's arguments are checked against the digest recorded with the decision (and,
   when not edited, against the proposed arguments) every time it is replayed.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import replace
from typing import Any, cast

from tether.agents.gate import Authorization as Authorization  # the seam's types, re-exported
from tether.agents.gate import CheckResult as CheckResult
from tether.agents.gate import ToolCallRequest as ToolCallRequest
from tether.engine.context import APPROVAL_SIGNAL_PREFIX, Context, current_step
from tether.engine.records import STARTED_BY_LABEL
from tether.errors import RunFailed, SignalTimeout, UserError
from tether.observe.names import AGENT_NAME, RISK, TOOL_CALL_ID, TOOL_NAME
from tether.store.base import FINISHED_STATUSES, Store, TrustActionRecord
from tether.trust.digest import args_digest
from tether.trust.evidence import current_ring, settle_from_journal, settle_outcomes
from tether.trust.policy import Policy
from tether.trust.snapshot import take_snapshot

"""Run label naming who started the run; that identity may not approve the run's requests."""
GATE_STEP = "trust.gate"
EXPIRE_STEP = "trust.expire"
ASK_AGAIN_STEP = "trust.ask_again"
"""In a fork that kept another run's approval request but not its decision: the fork's own."""
_OPEN_POLICY = Policy(default="auto")
"""Used when the App has no policy: everything is ``auto``, but failing checks still go to
review."""


def approval_signal(approval_id: str) -> str:
    """The signal a run waiting on this approval request waits for."""
    return f"{APPROVAL_SIGNAL_PREFIX}:{approval_id}"


class ActionRejected(RunFailed):
    """A reviewer's rejection (or an expired request) ended the run, as the policy says."""

    def __init__(self, message: str, *, run_id: str, approval_id: str) -> None:
        super().__init__(
            message,
            run_id=run_id,
            error_type="ActionRejected",
            details={"approval_id": approval_id},
        )
        self.approval_id = approval_id


class ApprovalMismatch(RunFailed):
    """A recorded decision does not match the arguments it was given for (digest check)."""

    def __init__(self, message: str, *, run_id: str, approval_id: str) -> None:
        super().__init__(
            message,
            run_id=run_id,
            error_type="ApprovalMismatch",
            details={"approval_id": approval_id},
        )


# Rejections that went back to each agent, per live run execution. A replay re-executes every
# authorize() call, so the count is rebuilt the same way each time.
_rejections: weakref.WeakKeyDictionary[Context, dict[str, int]] = weakref.WeakKeyDictionary()
# Automatic actions this execution let through whose tool outcome is not recorded yet: the next
# gate of the run reads it from the in-memory journal (the run listener catches the rest).
_unsettled: weakref.WeakKeyDictionary[Context, list[TrustActionRecord]] = (
    weakref.WeakKeyDictionary()
)


async def authorize(ctx: Context, request: ToolCallRequest) -> Authorization:
    """Decide whether the tool call runs: ``auto`` when every check passed, ``review`` waits
    for a named reviewer, ``deny`` refuses (see the module docstring)."""
    app = ctx.app
    configured = getattr(app, "policy", None) if app is not None else None
    if configured is None and all(c.passed for c in request.checks):
        return Authorization("run", dict(request.args))
    if app is None:
        raise RunFailed(f"run {ctx.run_id}: the trust gate needs the App executing the run")
    if configured is not None and not isinstance(configured, Policy):
        error = UserError(
            f"run {ctx.run_id}: App(policy=…) is a {type(configured).__name__}, not a "
            "tether.Policy; use tether.Policy({'read': 'auto', 'send': 'review'})"
        )
        ctx.fatal = error
        raise error
    policy: Policy = configured if configured is not None else _OPEN_POLICY
    store: Store = app.store
    _watch_outcomes(app, ctx.run_id)
    digest = args_digest(request.args)

    async def gate() -> dict[str, Any]:
        action = await _gate(ctx, store, policy, request, digest)
        step = current_step()
        step.set_meta(**{
            AGENT_NAME: request.agent,
            TOOL_NAME: request.tool,
            RISK: request.risk,
            "tether.trust.ring": action.ring,
            "tether.trust.status": action.status,
            **({TOOL_CALL_ID: request.call_id} if request.call_id else {}),
            "tether.trust.approval_id": action.id,
        })
        return {
            "id": action.id,
            "status": action.status,
            "ring": action.ring,
            "digest": action.digest,
            "reason": action.reason,
            "expires_at": action.expires_at,
        }

    gated: dict[str, Any] = await ctx.run_step(
        GATE_STEP,
        gate,
        record_input={"agent": request.agent, "tool": request.tool, "risk": request.risk,
                      "args": request.args, "digest": digest},
    )
    approval_id = str(gated["id"])
    if gated["status"] == "denied":
        return Authorization("deny", dict(request.args), reason=gated["reason"],
                             approval_id=approval_id)
    if gated["status"] == "auto":
        return Authorization("run", dict(request.args), approval_id=approval_id)
    if gated["digest"] != digest:
        raise _mismatch(ctx, approval_id, "the proposed arguments differ from the ones the "
                        "approval request was made for")
    if not approval_id.startswith(f"{ctx.run_id}-"):
        # A fork kept the source run's gate step. If it kept the decision too (the signal wait
        # is in its journal), that decision stands; if not, nobody would ever decide a request
        # of another run for this one, so the fork asks again — its own request, its own
        # reviewer, its own starter for the same-user rule.
        following = ctx.journal.get(ctx.next_sequence())
        if following is None or following.name == ASK_AGAIN_STEP:
            gated = await ctx.run_step(
                ASK_AGAIN_STEP, _ask_again, (ctx, store, policy, approval_id),
                record_input={"approval_id": approval_id},
            )
            approval_id = str(gated["id"])
    expires_at = gated.get("expires_at")
    remaining = None if expires_at is None else max(0.001, float(expires_at) - time.time())
    ctx.emit_event("approval_requested", key=f"{ctx.run_id}:approval:{approval_id}:requested",
                   data={"approval_id": approval_id, "agent": request.agent,
                         "tool": request.tool, "risk": request.risk, "args": request.args,
                         "reason": gated.get("reason")})
    try:
        decision = await ctx.wait_for_signal(approval_signal(approval_id), timeout=remaining)
    except SignalTimeout:
        decision = await ctx.run_step(
            EXPIRE_STEP, _expire, (store, approval_id), record_input={"approval_id": approval_id}
        )
    else:
        await _check_recorded(ctx, store, approval_id, decision)
    if isinstance(decision, dict):
        verdict = cast(dict[str, Any], decision)
        ctx.emit_event("approval_decided", key=f"{ctx.run_id}:approval:{approval_id}:decided",
                       data={"approval_id": approval_id, "status": verdict.get("status"),
                             "reviewer": verdict.get("reviewer"),
                             "edited": verdict.get("edited")})
    return _conclude(ctx, policy, request, approval_id, digest, decision)


async def _gate(
    ctx: Context, store: Store, policy: Policy, request: ToolCallRequest, digest: str
) -> TrustActionRecord:
    seq = current_step().seq
    action_id = f"{ctx.run_id}-{seq}"
    existing = await store.get_trust_action(action_id)
    if existing is not None:  # this step ran before the worker died; keep what it decided
        return existing
    ran = _unsettled.get(ctx)
    if ran:
        journal = [ctx.journal[s] for s in sorted(ctx.journal)]
        _unsettled[ctx] = await settle_from_journal(store, ran, journal)
    state = await current_ring(store, policy, request.agent, request.risk)
    failed = [c for c in request.checks if not c.passed]
    expires_at: float | None = None
    snapshot: dict[str, Any] | None = None
    if state.ring == "deny":
        status, reason = "denied", (
            f"the trust policy denies {request.risk!r} actions to agent {request.agent!r}; "
            f"{request.tool} was not called"
        )
    elif failed:
        status = "pending"
        reason = "self-checks failed: " + "; ".join(
            f"{c.name}: {c.reason or 'failed'}" for c in failed
        )
    elif state.ring == "auto":
        status, reason = "auto", state.change.reason if state.change else None
    else:
        status, reason = "pending", f"{request.risk!r} actions are reviewed by policy"
    if status == "pending":
        snapshot = await take_snapshot(
            ctx, store, agent=request.agent, category=request.risk, reason=reason or ""
        )
        if state.change is not None:
            snapshot["ring_change"] = state.change.reason
        seconds = policy.expire_seconds(request.risk)
        expires_at = time.time() + seconds if seconds is not None else None
    action = await store.put_trust_action(
        TrustActionRecord(
            id=action_id,
            run_id=ctx.run_id,
            seq=seq,
            workflow=ctx.workflow,
            agent=request.agent,
            tool=request.tool,
            category=request.risk,
            ring=state.ring,
            status=status,
            args=dict(request.args),
            digest=digest,
            created_at=time.time(),
            args_schema=request.args_schema or None,
            checks=[{"name": c.name, "passed": c.passed, "reason": c.reason}
                    for c in request.checks] or None,
            context=snapshot,
            reviewers=policy.reviewers_for(request.risk),
            started_by=ctx.labels.get(STARTED_BY_LABEL),
            call_id=request.call_id,
            reason=reason,
            expires_at=expires_at,
        )
    )
    if action.status == "auto":
        _unsettled.setdefault(ctx, []).append(action)
    return action


async def _ask_again(
    ctx: Context, store: Store, policy: Policy, source_id: str
) -> dict[str, Any]:
    """The request `source_id` (of the run this one was forked from), made anew for this run."""
    seq = current_step().seq
    action_id = f"{ctx.run_id}-{seq}"
    action = await store.get_trust_action(action_id)  # this step ran before a crash
    if action is None:
        source = await store.get_trust_action(source_id)
        if source is None:
            raise RunFailed(f"run {ctx.run_id} was forked after approval request {source_id}, "
                            "which is gone from the store; fork from before its trust.gate step")
        reason = f"asked again in run {ctx.run_id}, a fork of run {source.run_id} ({source_id})"
        seconds = policy.expire_seconds(source.category)
        action = await store.put_trust_action(replace(
            source, id=action_id, run_id=ctx.run_id, seq=seq, status="pending",
            created_at=time.time(), reason=reason,
            context=await take_snapshot(ctx, store, agent=source.agent,
                                        category=source.category, reason=reason),
            reviewers=policy.reviewers_for(source.category),
            started_by=ctx.labels.get(STARTED_BY_LABEL),
            expires_at=time.time() + seconds if seconds is not None else None,
            decided_by=None, decided_at=None, final_args=None, final_digest=None,
            edited=False, outcome=None,
        ))
    return {"id": action.id, "status": action.status, "ring": action.ring,
            "digest": action.digest, "reason": action.reason, "expires_at": action.expires_at}


async def _expire(store: Store, approval_id: str) -> dict[str, Any]:
    """Mark the request expired, unless a decision was recorded meanwhile: then that wins."""
    expired = await store.decide_trust_action(
        approval_id, status="expired", decided_by=None, decided_at=time.time(),
        final_args=None, final_digest=None, edited=False, reason=None, signal=None,
    )
    action = expired or await store.get_trust_action(approval_id)
    if action is None:
        raise RunFailed(f"approval request {approval_id} vanished from the store")
    return decision_payload(action)


def decision_payload(action: TrustActionRecord) -> dict[str, Any]:
    """What the run receives about a decision (the signal's payload)."""
    return {
        "approval_id": action.id,
        "status": action.status,
        "args": action.final_args,
        "digest": action.final_digest,
        "edited": action.edited,
        "reviewer": action.decided_by,
        "reason": action.reason,
        "decided_at": action.decided_at,
    }


async def _check_recorded(ctx: Context, store: Store, approval_id: str, decision: Any) -> None:
    """The signal only wakes the run; the decision recorded for the request is the authority.
    A signal put in the mailbox some other way (straight into the store, or ahead of the
    request) that does not match it is not acted on: the run fails, the tool is not called."""
    if not isinstance(decision, dict):
        return  # `_conclude` says what is wrong with it
    action = await store.get_trust_action(approval_id)
    given = cast(dict[str, Any], decision)
    if action is not None and action.status not in ("pending", "expired"):
        recorded = decision_payload(action)
        if all(recorded.get(k) == given.get(k) for k in ("status", "digest", "reviewer")) and (
            bool(recorded.get("edited")) == bool(given.get("edited"))
        ):
            return
    raise _mismatch(ctx, approval_id, "the decision received does not match the decision "
                    "recorded for the request (only `tether approve` / `tether reject`, "
                    "app.approve / app.reject or the dashboard record one)")


def _conclude(
    ctx: Context,
    policy: Policy,
    request: ToolCallRequest,
    approval_id: str,
    digest: str,
    decision: Any,
) -> Authorization:
    if not isinstance(decision, dict) or cast(dict[str, Any], decision).get(
        "approval_id"
    ) != approval_id:
        raise _mismatch(ctx, approval_id, f"the decision received is not for this request: "
                        f"{decision!r}")
    decision = cast(dict[str, Any], decision)
    status = decision.get("status")
    reviewer = decision.get("reviewer")
    if status == "approved":
        given = decision.get("args")
        args: dict[str, Any] = cast(dict[str, Any], given) if isinstance(given, dict) else {}
        if not isinstance(given, dict) or args_digest(args) != decision.get("digest"):
            raise _mismatch(ctx, approval_id, "the approved arguments do not match the digest "
                            "recorded with the decision")
        if not decision.get("edited") and decision.get("digest") != digest:
            raise _mismatch(ctx, approval_id, "the approval was given for other arguments than "
                            "the ones proposed now")
        return Authorization("run", dict(args), approval_id=approval_id, reviewer=reviewer)
    if status == "expired":
        reason = (f"no reviewer decided on {request.tool} in time (request {approval_id} "
                  "expired); the action was not performed")
        if policy.on_expire == "fail":
            raise _end(ctx, approval_id, f"run {ctx.run_id}: {reason}")
        return Authorization("reject", dict(request.args), reason=reason,
                             approval_id=approval_id)
    why = str(decision.get("reason") or "rejected")
    reason = f"rejected by {reviewer or 'a reviewer'}: {why}"
    counts = _rejections.setdefault(ctx, {})
    counts[request.agent] = counts.get(request.agent, 0) + 1
    if policy.on_reject == "fail" or counts[request.agent] > policy.max_rejections:
        limit = "" if policy.on_reject == "fail" else (
            f" (more than max_rejections={policy.max_rejections} for agent {request.agent!r})"
        )
        raise _end(ctx, approval_id, f"run {ctx.run_id}: {request.tool} call {reason}{limit}; "
                   "the policy ends the run on rejection")
    return Authorization("reject", dict(request.args), reason=reason, approval_id=approval_id,
                         reviewer=reviewer)


def _end(ctx: Context, approval_id: str, message: str) -> ActionRejected:
    error = ActionRejected(message, run_id=ctx.run_id, approval_id=approval_id)
    ctx.fatal = error  # the run ends even if workflow code catches it
    return error


def _mismatch(ctx: Context, approval_id: str, what: str) -> ApprovalMismatch:
    error = ApprovalMismatch(
        f"run {ctx.run_id}, approval {approval_id}: {what}. The tool was not called; inspect "
        f"the run with `tether show {ctx.run_id}`.",
        run_id=ctx.run_id,
        approval_id=approval_id,
    )
    ctx.fatal = error
    return error


def _watch_outcomes(app: Any, run_id: str) -> None:
    """Once per App: when a run that passed the gate ends, record how its tools fared."""
    state: dict[str, Any] | None = app.extensions.get("trust")
    if state is None:
        runs: set[str] = set()
        state = app.extensions["trust"] = {"runs": runs}
        store: Store = app.store

        async def on_run_end(ended: str, status: str) -> None:
            if ended not in runs or status not in FINISHED_STATUSES:
                return
            runs.discard(ended)
            await settle_outcomes(store, await store.list_trust_actions(run_id=ended))

        app.executor.listeners.append(on_run_end)
    cast(set[str], state["runs"]).add(run_id)
