"""`Agent`: a durable tool-calling loop in which every model request and tool call is a step.

One turn: check the spend limits and budgets, send the conversation to the model as one
journaled step (``{agent}.model``), then run each tool call the model asked for as one journaled
step (``{agent}.tool.{name}``) after the trust gate allowed it. On resume the recorded responses
and tool results replay from the journal, so the conversation is rebuilt exactly and nothing
completed is sent again. The loop ends when the model gives a valid output that passes the
agent's checks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any, cast

import jsonschema
import pydantic
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.toolsets import AbstractToolset

from tether.agents.errors import AgentFailed, LoopGuardTripped, OutputInvalid
from tether.agents.gate import CheckResult, ToolCallRequest, authorize
from tether.agents.guards import (
    DEFAULT_RESERVED_OUTPUT_TOKENS,
    LoopGuard,
    node_usage,
    precheck_model_call,
    record_scope_violation,
)
from tether.agents.models import (
    DEFAULT_MODEL_RETRY,
    load_response,
    request_model,
    resolve_model,
    short_hash,
)
from tether.agents.output import (
    MISSING,
    OUTPUT_TOOL,
    Check,
    OutputSchema,
    run_check,
    validation_text,
)
from tether.agents.scope import Scope, ScopeVerdict, enforce_scope
from tether.agents.state import RunState, render
from tether.agents.tools import Tool, ToolContext, as_tool
from tether.agents.toolsets import ToolsetSession, ToolsetToolInfo
from tether.engine.budget import Budget, Usage
from tether.engine.context import Context, current_step
from tether.engine.registry import WorkflowDef
from tether.engine.retry import Retry
from tether.engine.serde import to_jsonable
from tether.errors import StepFailed, UserError
from tether.observe import names


class Agent:
    """A narrow node: one job, its own tools, its own budget and scope.

    Use it alone (``app.register(agent)`` makes a workflow named after it) or as a node of a
    `Sequential`, `Parallel` or `Loop` pipeline.
    """

    def __init__(
        self,
        name: str,
        model: Model | str | Sequence[Model | str],
        instructions: str = "",
        *,
        tools: Sequence[Tool | Callable[..., Any] | AbstractToolset[Any]] = (),
        toolsets: Sequence[AbstractToolset[Any]] = (),
        output_type: Any = str,
        scope: Scope | None = None,
        budget: Budget | None = None,
        prompt: str | None = None,
        checks: Sequence[Check] = (),
        output_retries: int = 2,
        tool_retries: int = 3,
        loop_guard: int = 3,
        max_turns: int = 50,
        retry: Retry = DEFAULT_MODEL_RETRY,
        timeout: float | None = 120.0,
        model_settings: ModelSettings | None = None,
        version: str = "1",
        reserve_output_tokens: int = DEFAULT_RESERVED_OUTPUT_TOKENS,
        stream: bool = False,
    ) -> None:
        if not name or not all(ch.isalnum() or ch in "_-" for ch in name):
            raise UserError(f"Agent name {name!r} must be letters, digits, '_' or '-'")
        self.name = name
        self.model = model
        """A pydantic-ai model name (``openai:gpt-4.1-mini``) or `Model` object, or several
        (a list, or a pydantic-ai `FallbackModel`): each request goes to the first; when its
        step fails for good (its retries spent) the next one answers, and so on."""
        if isinstance(model, list | tuple) and not model:
            raise UserError(f"agent {name!r}: give at least one model")
        self.instructions = instructions
        """The system instructions; may use ``{placeholders}`` from the run state."""
        self.toolsets: list[AbstractToolset[Any]] = [
            *[t for t in tools if isinstance(t, AbstractToolset)], *toolsets]
        """pydantic-ai toolsets (`FunctionToolset`, `MCPToolset`…): see `agents.toolsets`."""
        self.tools = [as_tool(t) for t in tools if not isinstance(t, AbstractToolset)]
        self.output_type = output_type
        self.scope = scope
        self.budget = budget
        self.prompt = prompt
        """The user message template; by default the run state (input and earlier outputs) as JSON."""
        self.checks = list(checks)
        self.output_retries = output_retries
        """How many times invalid output (or failed checks) is re-asked before the node fails."""
        self.tool_retries = tool_retries
        """How many bad tool calls (unknown tool, invalid arguments, tool errors) the model may
        make in one node before the node fails."""
        self.loop_guard = loop_guard
        """The node fails when the model asks for the same tool with the same arguments this many
        times (the tool runs at most ``loop_guard - 1`` times)."""
        self.max_turns = max_turns
        """A backstop on model requests per node execution when no budget is set."""
        self.retry = retry
        self.timeout = timeout
        self.model_settings = model_settings
        self.version = version
        if reserve_output_tokens < 1:
            raise UserError(f"agent {name!r}: reserve_output_tokens must be at least 1")
        self.reserve_output_tokens = reserve_output_tokens
        """The completion tokens a model call is assumed to use at most when budgets or spend
        limits reserve its worst case, unless `model_settings` gives ``max_tokens`` (then that
        bound is used). A longer answer is reported as an overshoot of its reservation."""
        self.stream = stream
        """Stream model requests: the run's events carry the model's text as it arrives."""
        names_seen: set[str] = set()
        for t in self.tools:
            if t.name in names_seen or t.name == OUTPUT_TOOL:
                raise UserError(f"agent {name!r}: tool name {t.name!r} is used twice or reserved")
            names_seen.add(t.name)
        self._tools = {t.name: t for t in self.tools}
        self._structured = output_type is not str
        self._output = OutputSchema(output_type) if self._structured else None
        self._resolved: list[Model] | None = None
        schemas = [[t.name, t.schema] for t in self.tools] + (
            [self._output.schema] if self._output else [])
        self._tools_hash = short_hash(schemas)
        # Tool definitions are sent with every request but are not in the messages.
        self._tools_tokens = len(json.dumps(schemas)) // 4 if schemas else 0

    def __repr__(self) -> str:
        return f"Agent({self.name!r})"

    # --- registration ------------------------------------------------------------------------

    def nodes(self) -> list[Agent]:
        """The agents in this node: itself (pipelines list theirs)."""
        return [self]

    def register_on(self, app: Any) -> None:
        """Register this agent as a workflow named after it (`App.register` calls this)."""
        _remember_tools(app, self.nodes())

        async def workflow(ctx: Context, **input: Any) -> Any:
            return await self.execute(ctx, RunState(input=dict(input)))

        app.add_workflow(WorkflowDef(name=self.name, version=self.version, fn=workflow))

    def resolved_model(self) -> Model:
        """The (first) pydantic-ai `Model`, built on first use (a provider client needs its API
        key only when the agent actually runs)."""
        return self.resolved_models()[0]

    def resolved_models(self) -> list[Model]:
        """The models in the order they are tried: the primary, then each fallback. A
        pydantic-ai `FallbackModel` is unwrapped, so every request is its own journaled,
        priced step naming the model that really answered."""
        if self._resolved is None:
            from pydantic_ai.models.fallback import FallbackModel

            given = self.model
            listed: list[Model | str] = (
                list(given) if isinstance(given, list | tuple) else [cast(Model | str, given)]
            )
            models: list[Model] = []
            for entry in listed:
                resolved = resolve_model(entry)
                models.extend(resolved.models if isinstance(resolved, FallbackModel) else [resolved])
            self._resolved = models
        return self._resolved

    # --- the loop -------------------------------------------------------------------------------

    async def execute(self, ctx: Context, state: RunState) -> Any:
        """Run this node in the workflow `ctx` and return its output as JSON."""
        try:
            return await self._loop(ctx, state)
        except StepFailed as exc:  # e.g. a model request whose retries ran out
            raise AgentFailed(
                f"run {ctx.run_id}: node {self.name!r} failed: {exc}",
                node=self.name, run_id=ctx.run_id, error_type=exc.error_type,
                details={"step": exc.step, "seq": exc.seq},
            ) from exc

    async def _loop(self, ctx: Context, state: RunState) -> Any:
        if not self.toolsets:
            return await self._turns(ctx, state, None)
        session = ToolsetSession(self.name, self.toolsets, self.resolved_model())
        try:
            listed = await session.list(ctx)
            clash = sorted(set(listed) & {*self._tools, OUTPUT_TOOL})
            if clash:
                raise UserError(f"agent {self.name!r}: toolset tool(s) {', '.join(clash)} clash "
                                "with its own tools; prefix the toolset (toolset.prefixed())")
            return await self._turns(ctx, state, session)
        finally:
            await session.close()

    async def _turns(self, ctx: Context, state: RunState, session: ToolsetSession | None) -> Any:
        if self.scope is not None:
            # With several models the scope classifier uses the first.
            gate_model: Model | str = (self.resolved_models()[0] if isinstance(self.model, list | tuple)
                                       else cast(Model | str, self.model))
            await enforce_scope(self.scope, ctx, state, node=self.name, model=gate_model,
                                build_classifier=scope_classifier)
        instructions = render(self.instructions, state, node=self.name, what="instructions")
        prompt = (render(self.prompt, state, node=self.name, what="prompt")
                  if self.prompt is not None else state.as_prompt())
        meta = {"tether_node": self.name}
        messages: list[ModelMessage] = [
            ModelRequest(parts=[UserPromptPart(prompt)], instructions=instructions, metadata=meta)
        ]
        params = self._request_parameters(session)
        prompt_hash = short_hash(self.instructions)
        output_errors = 0
        tool_errors = 0
        repeats = LoopGuard(self.loop_guard)
        last_error = ""
        fallback = _ModelChoice(self.resolved_models())
        for _turn in range(self.max_turns):
            response = await self._request_with_fallback(ctx, messages, params, prompt_hash, fallback)
            messages.append(response)
            parts: list[ModelRequestPart] = []
            calls = [p for p in response.parts if isinstance(p, ToolCallPart)]
            output_calls = [c for c in calls if c.tool_name == OUTPUT_TOOL]
            tool_calls = [c for c in calls if c.tool_name != OUTPUT_TOOL]
            # An output ends the node; its tool calls would never be answered, so skip them.
            final, problem, checks = self._final_output(response, output_calls, tool_calls, state)
            if final is not MISSING:
                state.checks.extend(checks)
                return final
            if problem is not None:
                output_errors += 1
                last_error = problem
                if output_errors > self.output_retries:
                    raise OutputInvalid(
                        f"run {ctx.run_id}: node {self.name!r} gave no valid output after "
                        f"{output_errors} attempt(s); last error: {problem}",
                        node=self.name, run_id=ctx.run_id,
                        details={"last_error": problem, "attempts": output_errors},
                    )
                for call in output_calls:
                    parts.append(_failed(call, problem))
                if not output_calls:
                    parts.append(UserPromptPart(f"Your answer was not accepted: {problem}"))
            for call in tool_calls:
                listed = session.tools.get(call.tool_name) if session is not None else None
                if listed is not None and session is not None:
                    part, error = await self._toolset_call(ctx, session, listed, call, state,
                                                           repeats)
                else:
                    part, error = await self._tool_call(ctx, call, state, repeats)
                parts.append(part)
                if error:
                    tool_errors += 1
                    last_error = error
                    if tool_errors > self.tool_retries:
                        raise AgentFailed(
                            f"run {ctx.run_id}: node {self.name!r} made {tool_errors} bad tool "
                            f"calls; last: {error}. Check the tools' names and schemas in its "
                            "instructions, or raise tool_retries",
                            node=self.name, run_id=ctx.run_id, error_type="ToolErrors",
                            details={"last_error": error},
                        )
            if not parts:
                parts.append(UserPromptPart("Continue: answer with your output."))
            messages.append(ModelRequest(parts=parts, instructions=instructions, metadata=meta))
        raise AgentFailed(
            f"run {ctx.run_id}: node {self.name!r} did not finish within {self.max_turns} model "
            f"requests (last error: {last_error or 'none'}); give it a Budget or raise max_turns",
            node=self.name, run_id=ctx.run_id, error_type="TurnLimit",
        )

    def _request_parameters(self, session: ToolsetSession | None = None) -> ModelRequestParameters:
        tools = [ToolDefinition(name=t.name, parameters_json_schema=t.schema,
                                description=t.description) for t in self.tools]
        if session is not None:
            tools += [t.definition() for t in session.tools.values()]
        if self._output is None:
            return ModelRequestParameters(function_tools=tools, output_mode="text",
                                          allow_text_output=True)
        output = ToolDefinition(name=OUTPUT_TOOL, parameters_json_schema=self._output.schema,
                                description="Give your final answer.", kind="output")
        return ModelRequestParameters(function_tools=tools, output_mode="tool",
                                      output_tools=[output], allow_text_output=False)

    async def _request_with_fallback(
        self, ctx: Context, messages: list[ModelMessage], params: ModelRequestParameters,
        prompt_hash: str, choice: _ModelChoice,
    ) -> ModelResponse:
        """One request, answered by the current model or, when its step fails for good, by
        the next. Once a model has failed in this node execution the later requests go
        straight to the one that answered (a provider that is down stays down for a while).
        The failed step stays in the journal, so a replay takes the same path."""
        while True:
            try:
                return await self._request(ctx, messages, params, prompt_hash, choice.current)
            except StepFailed:
                if not choice.advance():
                    raise

    async def _request(
        self, ctx: Context, messages: list[ModelMessage], params: ModelRequestParameters,
        prompt_hash: str, model: Model | None = None,
    ) -> ModelResponse:
        model = model or self.resolved_model()
        estimate, budgets, windows = await precheck_model_call(
            ctx, messages, node=self.name, node_budget=self.budget,
            model_name=model.model_name, provider=model.system,
            max_tokens=(self.model_settings or {}).get("max_tokens"),
            extra_prompt_tokens=self._tools_tokens,
            reserve_output_tokens=self.reserve_output_tokens,
        )
        last = messages[-1]
        data = await ctx.run_step(
            f"{self.name}.model",
            request_model,
            (model, list(messages), self.model_settings, params),
            {
                "node": self.name,
                "agent": self.name,
                "prompt_hash": prompt_hash,
                "tools_hash": self._tools_hash,
                "app_version": getattr(ctx.app, "version", None),
                "app": ctx.app,
                **({"stream": True} if self.stream else {}),
            },
            retry=self.retry,
            timeout=self.timeout,
            is_async=True,
            kind="step",
            meta={names.OPERATION_NAME: names.OP_CHAT, names.NODE: self.name,
                  names.AGENT_NAME: self.name, names.REQUEST_MODEL: model.model_name,
                  names.PROVIDER_NAME: model.system},
            estimate=estimate,
            budgets=budgets,
            windows=windows,
            # The new message only: the conversation is the journal of earlier entries.
            record_input={"messages": len(messages), "new": _describe(last)},
        )
        return load_response(data)

    def _spent(self, ctx: Context) -> Usage:
        return node_usage(ctx, self.name)

    def _final_output(
        self, response: ModelResponse, output_calls: list[ToolCallPart],
        tool_calls: list[ToolCallPart], state: RunState,
    ) -> tuple[Any, str | None, list[CheckResult]]:
        """``(output, None, checks)`` when the response ends the node, ``(MISSING, problem,
        checks)`` when it must be re-asked, ``(MISSING, None, [])`` when it only calls tools."""
        if self._output is None:
            if tool_calls:
                return MISSING, None, []
            text = "".join(p.content for p in response.parts if isinstance(p, TextPart)).strip()
            if not text:
                return MISSING, "the answer was empty; reply with your output as text", []
            return self._checked(text, text, state)
        if not output_calls:
            if tool_calls:
                return MISSING, None, []
            text = "".join(p.content for p in response.parts if isinstance(p, TextPart)).strip()
            # Some models answer with the JSON as text instead of calling the output tool.
            value = self._output.from_text(text)
            if value is not MISSING:
                return self._checked(value, self._output.dump(value), state)
            return MISSING, (f"call the tool {OUTPUT_TOOL!r} with your answer; plain text is "
                              "not accepted"), []
        try:
            value = self._output.validate(output_calls[0].args_as_dict())
        except pydantic.ValidationError as exc:
            return MISSING, validation_text(exc), []
        except (ValueError, TypeError) as exc:
            return MISSING, f"the arguments are not valid JSON: {exc}", []
        return self._checked(value, self._output.dump(value), state)

    def _checked(
        self, value: Any, output: Any, state: RunState
    ) -> tuple[Any, str | None, list[CheckResult]]:
        results = [run_check(check, value, state, self.name) for check in self.checks]
        failed = [r for r in results if not r.passed]
        if failed:
            reasons = "; ".join(f"check {r.name} failed: {r.reason}" for r in failed)
            return MISSING, reasons, results
        return output, None, results

    async def _tool_call(
        self, ctx: Context, call: ToolCallPart, state: RunState, repeats: LoopGuard
    ) -> tuple[ModelRequestPart, str | None]:
        """Run one tool call; returns the part answering it and an error text if it was bad."""
        tool = self._tools.get(call.tool_name)
        if tool is None:
            owner = ctx.app.extensions.get("agents.tool_owners", {}).get(call.tool_name) if ctx.app else None
            await self._record_violation(ctx, call, owner)
            why = (f"tool {call.tool_name!r} belongs to agent {owner!r}, not to {self.name!r}"
                   if owner and owner != self.name else f"there is no tool {call.tool_name!r}")
            error = f"{why}; your tools are: {', '.join(self._tools) or 'none'}"
            return _failed(call, error), error
        try:
            raw = call.args_as_dict()
            args = tool.validate(raw)
        except pydantic.ValidationError as exc:
            error = f"invalid arguments for {tool.name}: {validation_text(exc)}"
            return _failed(call, error), error
        except (ValueError, TypeError) as exc:
            error = f"arguments for {tool.name} are not valid JSON: {exc}"
            return _failed(call, error), error
        count = repeats.count(tool.name, raw)
        if count >= self.loop_guard and self._bounded_by_budget(ctx):
            # An explicit model-call budget is the stop the user chose: keep the tool from
            # running again, tell the model, and let the budget end a model that insists.
            error = (f"loop guard: {tool.name} was already asked for {count - 1} times "
                     "with exactly these arguments and is not run again; use that result or "
                     "try something else")
            # Not a malformed call: it does not count toward the bad-tool-call bound.
            return _failed(call, error), None
        if count >= self.loop_guard:
            raise LoopGuardTripped(
                f"run {ctx.run_id}: node {self.name!r} asked for {tool.name}({_short(raw)}) "
                f"{count} times with the same arguments (loop guard {self.loop_guard}); "
                "the agent is stuck — improve its instructions or tools",
                node=self.name, run_id=ctx.run_id,
                details={"tool": tool.name, "args": raw, "repeats": count},
            )
        request = ToolCallRequest(
            agent=self.name, tool=tool.name, risk=tool.risk, args=raw,
            args_schema=tool.schema, checks=tuple(state.checks), call_id=call.tool_call_id,
            meta={"node": self.name},
        )
        decision = await authorize(ctx, request)
        if decision.decision != "run":
            reason = decision.reason or decision.decision
            return ToolReturnPart(tool.name, f"not run ({decision.decision}): {reason}",
                                  tool_call_id=call.tool_call_id, outcome="denied"), None
        if decision.args != raw:
            try:
                args = tool.validate(decision.args)
            except pydantic.ValidationError as exc:
                error = f"the approved arguments for {tool.name} are invalid: {validation_text(exc)}"
                return _failed(call, error), error
        try:
            result = await self._run_tool(ctx, tool, args, decision.args, call.tool_call_id)
        except StepFailed as exc:
            error = f"tool {tool.name} failed: {exc.error_type}: {exc.error_message}"
            return _failed(call, error), error
        return ToolReturnPart(tool.name, result, tool_call_id=call.tool_call_id), None

    async def _run_tool(
        self, ctx: Context, tool: Tool, args: dict[str, Any], shown: dict[str, Any],
        call_id: str | None,
    ) -> Any:
        budgets: tuple[tuple[Budget, Usage, str], ...] = ()
        if self.budget is not None:
            budgets = ((self.budget, self._spent(ctx), f"agent {self.name}"),)
        agent = self.name

        async def invoke() -> Any:
            step = current_step()
            step.add_usage(Usage(tool_calls=1))
            tool_ctx = ToolContext(idempotency_key=step.idempotency_key, run_id=step.run_id,
                                   labels=dict(step.labels), agent=agent, attempt=step.attempt,
                                   call_id=call_id)
            call_args: tuple[Any, ...] = (tool_ctx,) if tool.takes_context else ()
            if tool.is_async:
                return await tool.fn(*call_args, **args)
            return await asyncio.to_thread(tool.fn, *call_args, **args)

        return await ctx.run_step(
            f"{self.name}.tool.{tool.name}",
            invoke,
            retry=Retry(max_attempts=1 + tool.retries) if tool.retries else None,
            timeout=tool.timeout,
            is_async=True,
            meta={names.OPERATION_NAME: names.OP_TOOL, names.TOOL_NAME: tool.name,
                  names.NODE: self.name, names.AGENT_NAME: self.name, names.RISK: tool.risk,
                  names.TOOL_CALL_ID: call_id},
            estimate=Usage(tool_calls=1),
            budgets=budgets,
            record_input=to_jsonable(shown, what=f"the arguments of tool {tool.name}"),
        )

    async def _toolset_call(
        self, ctx: Context, session: ToolsetSession, info: ToolsetToolInfo, call: ToolCallPart,
        state: RunState, repeats: LoopGuard,
    ) -> tuple[ModelRequestPart, str | None]:
        """One call of a toolset's tool: the same checks as a `@tool`'s, then one step."""
        try:
            raw = call.args_as_dict()
            info.check(raw)
        except jsonschema.ValidationError as exc:
            error = f"invalid arguments for {info.name}: {exc.message}"
            return _failed(call, error), error
        except (ValueError, TypeError) as exc:
            error = f"arguments for {info.name} are not valid JSON: {exc}"
            return _failed(call, error), error
        count = repeats.count(info.name, raw)
        if count >= self.loop_guard:
            if self._bounded_by_budget(ctx):
                return _failed(call, f"loop guard: {info.name} was already asked for "
                               f"{count - 1} times with exactly these arguments and is not run "
                               "again; use that result or try something else"), None
            raise LoopGuardTripped(
                f"run {ctx.run_id}: node {self.name!r} asked for {info.name}({_short(raw)}) "
                f"{count} times with the same arguments (loop guard {self.loop_guard}); "
                "the agent is stuck — improve its instructions or tools",
                node=self.name, run_id=ctx.run_id,
                details={"tool": info.name, "args": raw, "repeats": count},
            )
        decision = await authorize(ctx, ToolCallRequest(
            agent=self.name, tool=info.name, risk=info.risk, args=raw, args_schema=info.schema,
            checks=tuple(state.checks), call_id=call.tool_call_id, meta={"node": self.name}))
        if decision.decision != "run":
            reason = decision.reason or decision.decision
            return ToolReturnPart(info.name, f"not run ({decision.decision}): {reason}",
                                  tool_call_id=call.tool_call_id, outcome="denied"), None
        args = decision.args

        async def invoke() -> Any:
            current_step().add_usage(Usage(tool_calls=1))
            return await session.call(ctx, info.name, args, call.tool_call_id)

        try:
            result = await ctx.run_step(
                f"{self.name}.tool.{info.name}", invoke, is_async=True,
                meta={names.OPERATION_NAME: names.OP_TOOL, names.TOOL_NAME: info.name,
                      names.NODE: self.name, names.AGENT_NAME: self.name, names.RISK: info.risk,
                      names.TOOL_CALL_ID: call.tool_call_id},
                estimate=Usage(tool_calls=1),
                budgets=((self.budget, self._spent(ctx), f"agent {self.name}"),)
                if self.budget is not None else (),
                record_input=to_jsonable(args, what=f"the arguments of tool {info.name}"),
            )
        except StepFailed as exc:
            error = f"tool {info.name} failed: {exc.error_type}: {exc.error_message}"
            return _failed(call, error), error
        return ToolReturnPart(info.name, result, tool_call_id=call.tool_call_id), None

    def _bounded_by_budget(self, ctx: Context) -> bool:
        """Whether a model-call budget (the agent's or the run's) bounds this loop."""
        budgets = (self.budget, ctx.budget)
        return any(b is not None and b.max_llm_calls is not None for b in budgets)

    async def _record_violation(self, ctx: Context, call: ToolCallPart, owner: str | None) -> None:
        await record_scope_violation(ctx, agent=self.name, tool=call.tool_name,
                                     args=_safe_args(call), owner=owner)


class _ModelChoice:
    """Which of an agent's models answers next, within one node execution."""

    def __init__(self, models: list[Model]) -> None:
        self.models = models
        self.index = 0

    @property
    def current(self) -> Model:
        return self.models[self.index]

    def advance(self) -> bool:
        """Move to the next model; False when there is none left."""
        if self.index + 1 >= len(self.models):
            return False
        self.index += 1
        return True


def _failed(call: ToolCallPart, error: str) -> ToolReturnPart:
    return ToolReturnPart(call.tool_name, error, tool_call_id=call.tool_call_id, outcome="failed")


def _safe_args(call: ToolCallPart) -> Any:
    try:
        return call.args_as_dict()
    except Exception:
        return str(call.args)[:500]


def _short(args: dict[str, Any]) -> str:
    text = json.dumps(args, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def _describe(message: ModelMessage) -> Any:
    from pydantic_ai.messages import ModelMessagesTypeAdapter

    try:
        return ModelMessagesTypeAdapter.dump_python([message], mode="json")[0]
    except Exception:
        return repr(message)[:2000]


def _remember_tools(app: Any, agents: Sequence[Agent]) -> None:
    """Which agent owns which tool name, so a refused call can say whose tool it was."""
    owners: dict[str, str] = app.extensions.setdefault("agents.tool_owners", {})
    for agent in agents:
        for name in agent._tools:  # pyright: ignore[reportPrivateUsage]
            owners.setdefault(name, agent.name)


def scope_classifier(scope: Scope, node: str, model: Model | str) -> Agent:
    """The agent that decides whether a request is in `scope`'s domain (`agents.scope`)."""
    return Agent(
        name=f"{node}-scope",
        model=model,
        instructions=(
            "You are the scope gate of an agent. Its domain is: "
            f"{scope.domain}. Decide whether the request below belongs to this domain. "
            "Answer with in_scope (true or false) and a one-sentence reason."
            + (f"\n{scope.instructions}" if scope.instructions else "")
        ),
        output_type=ScopeVerdict,
        output_retries=1,
        max_turns=3,
    )
