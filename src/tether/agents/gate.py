"""What a tool call asks the trust gate, and what it is told: the agents layer's side of the seam.

The agents layer builds a `ToolCallRequest` and runs the tool only when the `Authorization` it
gets back says ``run`` — with the authorization's `args`, which may be a reviewer's edit.
``reject`` and ``deny`` reasons go back to the model as the tool's result.

The gate itself lives in the trust layer, above this one (`tether.trust.gate.authorize`): the
App executing the run supplies it (`ToolGate`, implemented by `tether.App`), so the agents
layer never imports trust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tether.engine.context import Context
from tether.errors import RunFailed


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


class ToolGate(Protocol):
    """The App executing a run, as far as tool calls are concerned: it decides each one."""

    async def authorize_tool_call(
        self, ctx: Context, request: ToolCallRequest
    ) -> Authorization: ...


async def authorize(ctx: Context, request: ToolCallRequest) -> Authorization:
    """Ask the gate of the App executing `ctx`'s run whether the tool call runs (journaled
    there, so a replay decides the same way)."""
    app: Any = ctx.app
    if not callable(getattr(app, "authorize_tool_call", None)):
        # No App, so no policy: everything is ``auto``, but a failing check needs a reviewer.
        if all(check.passed for check in request.checks):
            return Authorization("run", dict(request.args))
        raise RunFailed(f"run {ctx.run_id}: the trust gate needs the App executing the run")
    gate: ToolGate = app
    return await gate.authorize_tool_call(ctx, request)
