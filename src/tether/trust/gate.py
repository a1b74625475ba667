"""The gate every tool call passes before it runs: the agents layer calls `authorize`.

This is the seam between the agents layer and the trust layer. The agents layer builds a
`ToolCallRequest` and runs the tool only when the returned `Authorization` says ``run`` — with
the authorization's `args`, which may be a reviewer's edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tether.engine.context import Context


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one self-check over an action or an output."""

    name: str
    passed: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A tool call the model asked for, before it runs."""

    agent: str
    tool: str
    risk: str
    args: dict[str, Any]
    args_schema: dict[str, Any]
    """The tool's JSON schema, to validate a reviewer's edits."""
    checks: tuple[CheckResult, ...] = ()
    call_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict[str, Any])


@dataclass(frozen=True, slots=True)
class Authorization:
    """What the gate decided."""

    decision: Literal["run", "reject", "deny"]
    args: dict[str, Any]
    """The exact arguments to run with (a reviewer's edit replaces the model's)."""
    reason: str | None = None
    """For ``reject`` and ``deny``: told to the agent as the tool's result."""
    approval_id: str | None = None
    reviewer: str | None = None


async def authorize(ctx: Context, request: ToolCallRequest) -> Authorization:
    """Decide whether the tool call runs. Minimal gate until the trust layer lands:
    ``auto`` runs when checks pass, ``deny`` refuses, ``review`` waits for the signal
    ``approval`` with payload ``{"approved": bool, "args": {...}?, "reason": str?}``."""
    policy = getattr(ctx.app, "policy", None) if ctx.app is not None else None
    ring = policy.ring(request.risk, agent=request.agent) if policy is not None else "auto"
    if ring == "auto" and any(not c.passed for c in request.checks):
        ring = "review"
    if ring == "deny":
        return Authorization("deny", request.args, reason=f"{request.risk} actions are denied")
    if ring == "auto":
        return Authorization("run", request.args)
    decision = await ctx.wait_for_signal("approval") or {}
    if decision.get("approved"):
        return Authorization("run", dict(decision.get("args") or request.args),
                             reviewer=decision.get("reviewer"))
    return Authorization("reject", request.args, reason=str(decision.get("reason") or "rejected"))
