"""tether's guards as pydantic-ai capabilities, for any pydantic-ai agent on tether.

They compose with `TetherDurability` (and with each other) in the agent's ``capabilities=[…]``
and call the same functions `tether.Agent` calls — one implementation of each guard:

* `TetherScope` — before the run, the scope gate (`scope.enforce_scope`) ends an out-of-domain
  request as ``refused``; after each model response, a call of a tool the agent does not own is
  recorded as a scope violation (`guards.record_scope_violation`) and pydantic-ai tells the
  model the tool does not exist;
* `TetherLoopGuard` — the same tool with the same arguments asked for too often
  (`guards.LoopGuard`) fails the run with `LoopGuardTripped`, or, when a model-call budget
  bounds the run, is not run again and the model is told so;
* `TetherTrust` — each tool call passes the trust gate (`gate.authorize`; the App executing the
  run decides, with the trust layer) with its risk category; a tool declared
  ``requires_approval=True`` (pydantic-ai's deferred approval) always becomes a tether approval
  request carrying the run's context: the run suspends holding nothing and resumes on the decision, which runs the tool with the approved arguments (bound
  to their digest) or tells the model why not. A call pydantic-ai defers for execution
  elsewhere (`CallDeferred`, external tools) suspends the run until its result arrives as the
  signal ``tool_result:<call id>``.

Each does nothing outside a tether workflow (the agent runs as plain pydantic-ai).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from weakref import WeakKeyDictionary

from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import SkipToolExecution
from pydantic_ai.messages import ModelResponse, ToolCallPart
from pydantic_ai.models import Model, ModelRequestContext
from pydantic_ai.tools import (
    AgentDepsT,
    DeferredToolRequests,
    DeferredToolResults,
    RunContext,
    ToolApproved,
    ToolDefinition,
    ToolDenied,
)

from tether.agents.errors import LoopGuardTripped
from tether.agents.gate import CheckResult, ToolCallRequest, authorize
from tether.agents.guards import LoopGuard, record_scope_violation
from tether.agents.scope import Scope, enforce_scope
from tether.agents.state import RunState
from tether.engine.context import Context, current_context

REQUIRES_APPROVAL = CheckResult(
    "requires_approval", False, "the tool is declared requires_approval: a human decides")
"""The check that sends a ``requires_approval`` tool to review whatever its category's ring."""


def _agent_name(ctx: RunContext[Any]) -> str:
    agent = ctx.agent
    name = getattr(agent, "name", None) if agent is not None else None
    return name or "agent"


@dataclass
class TetherScope(AbstractCapability[AgentDepsT]):
    """The agent's domain: out-of-domain prompts end the run ``refused``; calls of tools the
    agent does not own are refused and recorded."""

    scope: Scope

    async def before_run(self, ctx: RunContext[AgentDepsT]) -> None:
        tctx = current_context()
        if tctx is None:
            return
        prompt = ctx.prompt if isinstance(ctx.prompt, str) else str(ctx.prompt or "")
        await enforce_scope(self.scope, tctx, RunState(input={"prompt": prompt}),
                            node=_agent_name(ctx),
                            model=ctx.model if isinstance(ctx.model, Model) else None)

    async def after_model_request(
        self, ctx: RunContext[AgentDepsT], *, request_context: ModelRequestContext,
        response: ModelResponse,
    ) -> ModelResponse:
        tctx = current_context()
        if tctx is None:
            return response
        params = request_context.model_request_parameters
        owned = {t.name for t in (*params.function_tools, *params.output_tools)}
        agent = _agent_name(ctx)
        for part in response.parts:
            if isinstance(part, ToolCallPart) and part.tool_name not in owned:
                owners: dict[str, str] = (tctx.app.extensions.get("agents.tool_owners", {})
                                          if tctx.app is not None else {})
                await record_scope_violation(
                    tctx, agent=agent, tool=part.tool_name, args=_args(part),
                    owner=owners.get(part.tool_name))
        return response


@dataclass
class TetherLoopGuard(AbstractCapability[AgentDepsT]):
    """Stops an agent that asks for the same tool with the same arguments `limit` times."""

    limit: int = 3
    _guards: WeakKeyDictionary[Context, dict[str, LoopGuard]] = field(
        default_factory=WeakKeyDictionary[Context, dict[str, LoopGuard]], repr=False)

    async def before_tool_execute(
        self, ctx: RunContext[AgentDepsT], *, call: ToolCallPart, tool_def: ToolDefinition,
        args: Any,
    ) -> Any:
        tctx = current_context()
        if tctx is None:
            return args
        guard = self._guards.setdefault(tctx, {}).setdefault(
            ctx.run_id or "", LoopGuard(self.limit))
        raw = _args(call)
        repeats = guard.tripped(tool_def.name, raw)
        if repeats is None:
            return args
        if tctx.budget is not None and tctx.budget.max_llm_calls is not None:
            # A model-call budget is the stop the user chose: tell the model, let it bound.
            raise SkipToolExecution(
                f"loop guard: {tool_def.name} was already asked for {repeats - 1} times with "
                "exactly these arguments and is not run again; use that result or try "
                "something else")
        agent = _agent_name(ctx)
        error = LoopGuardTripped(
            f"run {tctx.run_id}: agent {agent!r} asked for {tool_def.name} {repeats} times with "
            f"the same arguments (loop guard {self.limit}); the agent is stuck — improve its "
            "instructions or tools",
            node=agent, run_id=tctx.run_id,
            details={"tool": tool_def.name, "args": raw, "repeats": repeats},
        )
        tctx.fatal = error
        raise error


@dataclass
class TetherTrust(AbstractCapability[AgentDepsT]):
    """Every tool call passes tether's trust gate with its risk category: the App's `Policy`
    maps it to ``auto``, ``review`` (an approval request; the run suspends) or ``deny``.

    A tool's category is ``risks[name]``, else its metadata ``{"risk": …}``, else
    `default_risk`. Tools declared ``requires_approval=True`` always go to review."""

    risks: Mapping[str, str] = field(default_factory=dict[str, str])
    default_risk: str = "read"
    _approved: WeakKeyDictionary[Context, set[str]] = field(
        default_factory=WeakKeyDictionary[Context, set[str]], repr=False)

    def risk_of(self, tool: ToolDefinition) -> str:
        """The trust category of `tool`."""
        if tool.name in self.risks:
            return self.risks[tool.name]
        meta = tool.metadata or {}
        risk = meta.get("risk")
        return risk if isinstance(risk, str) and risk else self.default_risk

    async def wrap_tool_execute(
        self, ctx: RunContext[AgentDepsT], *, call: ToolCallPart, tool_def: ToolDefinition,
        args: Any, handler: Any,
    ) -> Any:
        tctx = current_context()
        if tctx is None or call.tool_call_id in self._approved.get(tctx, set()):
            return await handler(args)  # approved already, as a requires_approval call
        decision = await authorize(tctx, self._request(ctx, call, tool_def, ()))
        if decision.decision != "run":
            return f"not run ({decision.decision}): {decision.reason or decision.decision}"
        raw = _args(call)
        if decision.args != raw and isinstance(args, dict):
            args = {**cast(dict[str, Any], args), **decision.args}
        return await handler(args)

    async def handle_deferred_tool_calls(
        self, ctx: RunContext[AgentDepsT], *, requests: DeferredToolRequests,
    ) -> DeferredToolResults | None:
        tctx = current_context()
        if tctx is None or not (requests.approvals or requests.calls):
            return None
        manager = ctx.tool_manager
        tools = {name: t.tool_def for name, t in (manager.tools or {}).items()} \
            if manager is not None else {}
        results = DeferredToolResults()
        for call in requests.calls:
            # Executed outside (pydantic-ai's CallDeferred / external tools): the run waits,
            # holding nothing, for the result sent as the signal ``tool_result:<call id>``.
            signal = deferred_result_signal(call.tool_call_id)
            tctx.emit_event("tool_call_deferred", key=f"{tctx.run_id}:{signal}",
                            data={"tool": call.tool_name, "args": _args(call),
                                  "call_id": call.tool_call_id, "signal": signal})
            results.calls[call.tool_call_id] = await tctx.wait_for_signal(signal)
        for call in requests.approvals:
            tool_def = tools.get(call.tool_name) or ToolDefinition(name=call.tool_name)
            decision = await authorize(tctx, self._request(ctx, call, tool_def,
                                                           (REQUIRES_APPROVAL,)))
            if decision.decision == "run":
                self._approved.setdefault(tctx, set()).add(call.tool_call_id)
                results.approvals[call.tool_call_id] = ToolApproved(
                    override_args=dict(decision.args))
            else:
                results.approvals[call.tool_call_id] = ToolDenied(
                    f"not run ({decision.decision}): {decision.reason or decision.decision}")
        return results

    def _request(
        self, ctx: RunContext[AgentDepsT], call: ToolCallPart, tool_def: ToolDefinition,
        checks: tuple[CheckResult, ...],
    ) -> ToolCallRequest:
        agent = _agent_name(ctx)
        return ToolCallRequest(
            agent=agent, tool=tool_def.name, risk=self.risk_of(tool_def), args=_args(call),
            args_schema=tool_def.parameters_json_schema, checks=checks,
            call_id=call.tool_call_id, meta={"node": agent},
        )


def deferred_result_signal(call_id: str) -> str:
    """The signal that carries the result of an externally executed (deferred) tool call:
    ``app.signal(run_id, deferred_result_signal(call_id), result)``."""
    return f"tool_result:{call_id}"


def _args(call: ToolCallPart) -> dict[str, Any]:
    try:
        return call.args_as_dict()
    except Exception:
        return {"raw": str(call.args)[:500]}
