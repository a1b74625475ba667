"""`TetherDurability`: tether as a pydantic-ai durability engine.

A user keeps their `pydantic_ai.Agent` and adds one capability::

    agent = pydantic_ai.Agent("openai:gpt-4.1-mini", name="support", tools=[lookup],
                              capabilities=[tether.TetherDurability(app)])

Called inside a tether workflow (or registered with ``app.register(agent)``, which makes a
workflow named after it), every model request, function-tool call and MCP call of the run is
one tether step, through pydantic-ai's public engine surface (`pydantic_ai.durable_exec`):

1. pydantic-ai names each durable unit (``support__model.request``,
   ``support__function_toolset__<id>.call_tool:lookup``…) and hands its body to
   `TetherOperationBackend.execute`, which runs it with `Context.run_step` — the step takes the
   next sequence number, so on replay the recorded result comes back and nothing is sent, run or
   paid again; a step's retry policy, leases and fencing apply as to any step;
2. a model step is priced and fingerprinted at record time (`guards.record_model_call`) and is
   checked against the run's budget before it is sent; provider faults are classified for the
   retry policy as for `tether.Agent`;
3. values cross the journal as JSON (`JOURNAL_CODEC`: pydantic-ai's `JSON_CODEC`, except that
   a model response just received is handed back as the object itself, not rebuilt from its
   JSON — the JSON is what is journaled, and what a replay rebuilds the same response from);
   tools run one at a time inside a workflow, so sequence numbers are assigned in the same order
   on every execution.

Outside a workflow the capability is transparent: the agent runs as if it were not there.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal, cast

from pydantic_ai.agent import EventStreamHandler
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.durable_exec import (
    JSON_CODEC,
    BaseDurabilityCapability,
    DurabilityEngineSpec,
    DurableOperationId,
    JournalCallableOperationBackend,
    ModelRequestId,
    RoleBasedOperationConfig,
    ToolsetCallToolId,
    ToolsetValidateToolArgumentsId,
    conversation_id_from_run_id,
)
from pydantic_ai.exceptions import UserError as PydanticAIUserError
from pydantic_ai.messages import (
    AgentStreamEvent,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.tools import AgentDepsT, RunContext
from pydantic_ai.toolsets import ToolsetTool

from tether.agents.guards import (
    emit_text_delta,
    precheck_model_call,
    record_model_call,
    text_delta,
)
from tether.agents.models import (
    DEFAULT_MODEL_RETRY,
    classify_failure,
    settle_rate_limits,
    short_hash,
    wait_for_rate_limits,
)
from tether.engine.budget import ZERO, Budget, Usage
from tether.engine.context import Context, current_context, current_step
from tether.engine.registry import WorkflowDef
from tether.engine.retry import Retry
from tether.engine.serde import JsonObject, to_jsonable
from tether.errors import UserError
from tether.observe import names
from tether.store.base import SpendWindow


class _Executed(JsonObject):
    """The JSON of a model response a step has just received, carrying the response itself:
    the step journals the JSON (already JSON values, so as it is), `JOURNAL_CODEC.load`
    returns the object."""

    __slots__ = ("value",)

    def __init__(self, payload: dict[str, Any], value: ModelResponse) -> None:
        super().__init__(payload)
        self.value = value


class _JournalCodec:
    """`JSON_CODEC`, without rebuilding a model response that was not replayed.

    A `ModelResponse` round-trips through its JSON exactly (its type adapter rebuilds an equal
    response), so on first execution the response the model returned is used as it is — as
    pydantic-ai's object-passing engines do — and only a replay rebuilds it from the journal.
    Other values (tool results may hold objects JSON turns into dicts) round-trip as before, so
    a first execution sees what a replay sees."""

    def dump(self, tp: Any, value: Any) -> Any:
        payload = JSON_CODEC.dump(tp, value)
        if tp is ModelResponse and type(payload) is dict:
            return _Executed(cast(dict[str, Any], payload), value)
        return payload

    def load(self, tp: Any, payload: Any) -> Any:
        if type(payload) is _Executed:
            return payload.value
        return JSON_CODEC.load(tp, payload)


JOURNAL_CODEC = _JournalCodec()
"""The codec `TetherDurability` declares to pydantic-ai (see `_JournalCodec`)."""

StepConfig = dict[str, Any]
"""How a durable unit runs as a step: ``retry`` (a `tether.Retry`), ``timeout`` (seconds).
Per tool: ``Tool(..., metadata={"tether": {"retries": 2, "timeout": 30}})``."""


class TetherOperationBackend(JournalCallableOperationBackend[StepConfig]):
    """Runs each pydantic-ai durable unit as one tether step of the current workflow."""

    def __init__(self, capability: TetherDurability[Any], config: RoleBasedOperationConfig[StepConfig]) -> None:
        super().__init__(agent_name=capability.name, default_model_id=capability.default_model_id,
                         config=config)
        self.capability = capability
        self.model_operations: dict[tuple[str | None, str], Any] = {}
        """Model operations bound through this backend, by ``(model_id, model_name)``."""
        self._prompt_hashes: dict[str, str] = {}
        self._tools_hashes: dict[tuple[str, ...], tuple[str, list[Any]]] = {}

    async def execute(
        self,
        *,
        operation_id: DurableOperationId,
        name: str,
        body: Callable[[], Awaitable[object]],
        cache_key: tuple[object, ...],
        config: StepConfig,
    ) -> object:
        ctx = current_context()
        if ctx is None:  # outside a workflow (or inside a step): run as a plain call
            return await body()
        agent = self.capability.name
        retry = _retry_of(config)
        timeout = cast(float | None, config.get("timeout"))
        meta: dict[str, Any] = {names.NODE: agent, names.AGENT_NAME: agent}
        estimate, budgets = ZERO, cast(tuple[tuple[Budget, Usage, str], ...], ())
        windows: tuple[SpendWindow, ...] = ()
        record_input: Any = None
        fn: Callable[[], Awaitable[object]] = body
        if isinstance(operation_id, ModelRequestId):
            messages = cast(list[ModelMessage], cache_key[1])
            params = cast(ModelRequestParameters, cache_key[3])
            settings = cast(dict[str, Any] | None, cache_key[2]) or {}
            estimate, budgets, windows = await precheck_model_call(
                ctx, messages, node=agent, node_budget=self.capability.budget,
                model_name=self.capability.model_name, provider=self.capability.provider,
                max_tokens=settings.get("max_tokens"))
            meta[names.OPERATION_NAME] = names.OP_CHAT
            # The name alone, as a completed call records it (`record_model_call`): a call
            # that fails for good must be grouped with its model, not as `provider:name`.
            meta[names.REQUEST_MODEL] = self.capability.model_name
            if self.capability.provider is not None:
                meta[names.PROVIDER_NAME] = self.capability.provider
            record_input = {"messages": len(messages), "new": _describe(messages[-1])}
            fn = self._model_body(ctx, body, messages, params)
        elif isinstance(operation_id, ToolsetCallToolId):
            tool_name, tool_args = cast(str, cache_key[0]), cache_key[1]
            meta.update({names.OPERATION_NAME: names.OP_TOOL, names.TOOL_NAME: tool_name,
                         "tether.toolset": operation_id.toolset_kind})
            estimate = Usage(tool_calls=1)
            record_input = tool_args
            fn = _tool_body(body)
            seq = ctx.next_sequence()
            ctx.emit_event("tool_call", seq=seq, key=f"{ctx.run_id}:{seq}:tool_call",
                           data={"agent": agent, "tool": tool_name, "args": tool_args,
                                 "toolset": operation_id.toolset_kind})
        seq = ctx.next_sequence()
        result = await ctx.run_step(
            name, fn, retry=retry, timeout=timeout, is_async=True, meta=meta,
            estimate=estimate, budgets=budgets, windows=windows, record_input=record_input,
        )
        if isinstance(operation_id, ModelRequestId) and isinstance(result, dict):
            text = _response_text(cast(dict[str, Any], result))
            if text:  # the whole text, kept: a watcher that missed live deltas still gets it
                ctx.emit_event("model_text", seq=seq, key=f"{ctx.run_id}:{seq}:model_text",
                               data={"agent": agent, "text": text})
        return result

    def _prompt_hash(self, instructions: str) -> str:
        found = self._prompt_hashes.get(instructions)
        if found is None:
            found = self._prompt_hashes[instructions] = short_hash(instructions)
        return found

    def _tools_hash(self, params: ModelRequestParameters) -> str:
        # pydantic-ai hands each request fresh copies of the tool definitions (a durability
        # capability overrides `prepare_model_request`, so the core copies them per attempt):
        # their schemas are compared with the ones hashed last time for these tool names (a
        # comparison in C, allocating nothing) instead of being encoded and hashed again.
        tools = (*params.function_tools, *params.output_tools)
        key = tuple(t.name for t in tools)
        schemas = [t.parameters_json_schema for t in tools]
        cached = self._tools_hashes.get(key)
        if cached is not None and cached[1] == schemas:
            return cached[0]
        found = short_hash([[t.name, t.parameters_json_schema] for t in tools])
        if key in self._tools_hashes or len(self._tools_hashes) < 256:
            # A copy of its own: what a request's hooks do to theirs later cannot change it.
            self._tools_hashes[key] = (found, copy.deepcopy(schemas))
        return found

    def _model_body(
        self, ctx: Context, body: Callable[[], Awaitable[object]],
        messages: list[ModelMessage], params: ModelRequestParameters,
    ) -> Callable[[], Awaitable[object]]:
        capability = self.capability
        app = ctx.app
        prompt_hash = self._prompt_hash(_instructions(messages))
        tools_hash = self._tools_hash(params)

        async def request() -> object:
            capacity = await wait_for_rate_limits(app, capability.model_label, messages)
            try:
                payload = await body()
            except Exception as exc:
                mapped = classify_failure(exc, node=capability.name, model=capability.model_label)
                if mapped is exc:
                    raise
                raise mapped from exc
            finally:
                await settle_rate_limits(app, capacity)
            data = cast(dict[str, Any], payload) if isinstance(payload, dict) else {}
            usage = cast(dict[str, Any], data.get("usage") or {})
            record_model_call(
                current_step(), app=app, provider=data.get("provider_name") or capability.provider,
                request_model=capability.model_name, response_model=data.get("model_name"),
                input_tokens=int(usage.get("input_tokens") or 0),
                output_tokens=int(usage.get("output_tokens") or 0),
                agent=capability.name, node=capability.name, prompt_hash=prompt_hash,
                tools_hash=tools_hash, app_version=getattr(app, "version", None),
            )
            return payload

        return request


def _tool_body(body: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[object]]:
    async def call() -> object:
        current_step().add_usage(Usage(tool_calls=1))
        return await body()

    return call


class TetherDurability(BaseDurabilityCapability[AgentDepsT]):
    """Makes a pydantic-ai agent durable on tether: every model request, function-tool call and
    MCP call becomes a journaled tether step (see the module docstring).

    Use it in the agent's ``capabilities=[…]``; run the agent inside an ``@app.workflow`` or
    register it with ``app.register(agent)`` (a workflow named after the agent, input
    ``{"prompt": …}``).
    """

    engine_spec = DurabilityEngineSpec(
        engine_name="tether",
        durable_unit_noun="step",
        durable_unit_plural="steps",
        durable_container_noun="workflow",
        codec=JOURNAL_CODEC,
        wrapped_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        toolset_lifecycles={"function": "enter-always", "mcp": "enter-in-durable-unit",
                            "dynamic": "enter-never"},
        tool_call_result_upgrade_lenient=False,
        journal_discovery=True,
        # tether numbers steps when they are called: tools run one at a time in a workflow so
        # each takes the same number on every execution.
        sequential_tools_in_durable_context=True,
        unsupported_runtime_toolset_kinds=frozenset(),
        tool_config_key="tether",
    )

    def __init__(
        self,
        app: Any = None,
        *,
        name: str | None = None,
        models: Mapping[str, Model] | None = None,
        model_retry: Retry = DEFAULT_MODEL_RETRY,
        model_timeout: float | None = 120.0,
        tool_retry: Retry | None = None,
        tool_timeout: float | None = None,
        budget: Budget | None = None,
        version: str = "1",
        stream: bool | None = None,
    ) -> None:
        """`app`: the `tether.App` the agent runs on (``app.register(agent)`` also sets it).
        `model_retry`/`tool_retry`: the step retry policies; `budget`: a budget for this agent's
        own calls (the run's budget is checked too); `version`: the workflow version;
        `stream`: whether the registered workflow streams model requests, so the run's events
        carry the text live (default: when the model can stream)."""
        super().__init__(models=models, name=name)
        self.app = app
        self.budget = budget
        self.version = version
        self.stream = stream
        self._model_config: StepConfig = {"retry": model_retry, "timeout": model_timeout}
        self._tool_config: StepConfig = {"retry": tool_retry, "timeout": tool_timeout}
        self._backend: TetherOperationBackend | None = None
        self._model_label: tuple[object, str] | None = None

    # --- what pydantic-ai asks an engine ---------------------------------------------------

    @property
    def in_durable_context(self) -> bool:
        return current_context() is not None

    def get_default_run_id(self) -> str | None:
        ctx = current_context()
        if ctx is None:
            return None
        return f"{ctx.run_id}:{ctx.next_sequence()}"

    def get_default_conversation_id(self, run_id: str) -> str | None:
        return conversation_id_from_run_id(run_id) if self.in_durable_context else None

    def get_durable_operation_backend(self) -> TetherOperationBackend:
        # pydantic-ai asks for the backend on every model request: one per capability copy
        # (the agent's bound copy shares nothing with the one it was copied from).
        backend = self._backend
        if backend is not None and backend.capability is self:
            return backend
        resolve = self._build_resolve_tool_config(self._tool_config)

        def tool_config(operation_id: DurableOperationId, tool: object | None,
                        tool_name: str) -> StepConfig | Literal[False]:
            assert isinstance(operation_id, ToolsetCallToolId | ToolsetValidateToolArgumentsId)
            return cast(StepConfig | Literal[False], resolve(cast(ToolsetTool[Any] | None, tool), tool_name))

        backend = TetherOperationBackend(self, RoleBasedOperationConfig(
            model=self._model_config, event=self._tool_config, capability=self._tool_config,
            tool=self._tool_config, resolve_tool=tool_config))
        self._backend = backend
        return backend

    def _bind_model_operations(self, backend: Any, *, model_id: str | None,
                               model_name: str) -> Any:
        # pydantic-ai binds the four model operations again for every request of a callable
        # engine, because their names depend on the request's model; bound once per model they
        # are the same operations, without the closures and codecs built per request.
        cache = backend.model_operations if isinstance(backend, TetherOperationBackend) else None
        if cache is None:
            return super()._bind_model_operations(backend, model_id=model_id, model_name=model_name)  # pyright: ignore[reportPrivateUsage]
        key = (model_id, model_name)
        found = cache.get(key)
        if found is None:
            found = cache[key] = super()._bind_model_operations(  # pyright: ignore[reportPrivateUsage]
                backend, model_id=model_id, model_name=model_name)
        return found

    @property
    def _has_prepare_model_request(self) -> bool:
        # pydantic-ai copies every tool definition (schemas, metadata) for every request attempt
        # when a capability overrides `prepare_model_request`, so that such a hook may edit them
        # in place without the next attempt seeing it. The durable base's hook edits nothing: it
        # only swaps a model that is not durable (a `RetryModelRequest` to another model) for a
        # durable one, and it still runs for every attempt. So this capability asks for no copy;
        # another capability with its own hook still gets them (the core asks each one). A
        # subclass that overrides the hook gets them too.
        hook = type(self).prepare_model_request
        return hook not in (AbstractCapability.prepare_model_request,
                            BaseDurabilityCapability.prepare_model_request)

    def _toolset_base_config(self, kind: Any) -> Any:
        return self._tool_config

    def _model_stream_event_handler(self) -> EventStreamHandler[AgentDepsT] | None:
        # Inside the model step, while the model streams: its text deltas go to the run's event
        # stream as they arrive (live-only events), then to the user's handler, if any.
        user = self._effective_event_stream_handler()
        app = self.app
        if app is None:
            return user

        async def handler(ctx: RunContext[AgentDepsT], stream: AsyncIterable[AgentStreamEvent]) -> None:
            step = current_step()

            async def watched() -> AsyncIterator[AgentStreamEvent]:
                async for event in stream:
                    delta = text_delta(event)
                    if delta:
                        emit_text_delta(app, step, self.name, delta)
                    yield event

            if user is not None:
                await user(ctx, watched())
            else:
                async for _ in watched():
                    pass

        return handler

    # --- tether's side ----------------------------------------------------------------------

    def register_agent_on(self, app: Any, agent: Any) -> None:
        """Make `agent` a workflow named after it (``app.register(agent)`` calls this): its
        input is ``{"prompt": …}``, its output the agent's output as JSON."""
        if self.app is None:
            self.app = app
        name = self.name or getattr(agent, "name", None)
        if not name:
            raise UserError("app.register(agent): give the pydantic-ai Agent a name= (it names "
                            "the workflow and the agent's steps)")

        stream = self.stream if self.stream is not None else _streams(agent.model)

        async def workflow(ctx: Context, prompt: str | None = None, **extra: Any) -> Any:
            if extra:
                raise UserError(f"run {ctx.run_id}: workflow {name!r} takes the input "
                                f"{{'prompt': …}}, not {sorted(extra)}")
            # Streamed requests, so the run's event stream carries the model's text live.
            try:
                result = await agent.run(prompt, event_stream_handler=_drain if stream else None)
            except PydanticAIUserError as exc:
                if "DeferredToolRequests" not in str(exc):
                    raise
                # pydantic-ai's advice (add DeferredToolRequests to the output type) would end
                # the run with the call undecided; on tether the call becomes an approval.
                raise UserError(
                    f"agent {name!r} called a tool that needs approval (requires_approval, or "
                    "a deferred tool) and nothing decides it: add tether.TetherTrust(risks=…) "
                    "to the agent's capabilities so the call becomes a tether approval request "
                    "(docs/byoa.md)") from exc
            return to_jsonable(result.output, what=f"the output of agent {name!r}")

        app.add_workflow(WorkflowDef(name=name, version=self.version, fn=workflow))

    @property
    def model_label(self) -> str:
        """``provider:model`` of the agent's default model."""
        model = self.agent.model if self.agent is not None else None
        cached = self._model_label
        if cached is not None and cached[0] is model:  # asked several times per request
            return cached[1]
        label = f"{model.system}:{model.model_name}" if isinstance(model, Model) else str(model or "unknown")
        self._model_label = (model, label)
        return label

    @property
    def model_name(self) -> str:
        return self.model_label.split(":", 1)[-1]

    @property
    def provider(self) -> str | None:
        label = self.model_label
        return label.split(":", 1)[0] if ":" in label else None


async def _drain(ctx: RunContext[Any], stream: AsyncIterable[AgentStreamEvent]) -> None:
    async for _ in stream:
        pass


def durability_of(agent: Any) -> TetherDurability[Any] | None:
    """The `TetherDurability` capability among a pydantic-ai agent's capabilities (the one
    ``app.register(agent)`` registers through), or ``None``."""
    root = getattr(agent, "root_capability", None)
    found: list[TetherDurability[Any]] = []

    def visit(capability: Any) -> None:
        if isinstance(capability, TetherDurability):
            found.append(cast("TetherDurability[Any]", capability))

    if root is not None and callable(getattr(root, "apply", None)):
        root.apply(visit)
    return found[0] if found else None


def _streams(model: Any) -> bool:
    """Whether a model can stream (pydantic-ai's FunctionModel only with a stream function)."""
    from pydantic_ai.models.function import FunctionModel

    return not (isinstance(model, FunctionModel) and model.stream_function is None)


def _retry_of(config: StepConfig) -> Retry | None:
    retry = config.get("retry")
    if isinstance(retry, Retry):
        return retry
    retries = config.get("retries")
    if retries is None:
        return None
    if not isinstance(retries, int) or retries < 0:
        raise UserError(f"tool metadata {{'tether': {{'retries': {retries!r}}}}} must be a "
                        "non-negative integer")
    return Retry(max_attempts=1 + retries) if retries else None


def _response_text(payload: dict[str, Any]) -> str:
    parts = cast(list[dict[str, Any]], payload.get("parts") or [])
    return "".join(str(p.get("content") or "") for p in parts if p.get("part_kind") == "text")


def _instructions(messages: list[ModelMessage]) -> str:
    for message in messages:
        if isinstance(message, ModelRequest):
            if message.instructions:
                return message.instructions
            for part in message.parts:
                if isinstance(part, SystemPromptPart):
                    return part.content
    return ""


def _describe(message: ModelMessage) -> Any:
    from pydantic_ai.messages import ModelMessagesTypeAdapter

    try:
        return ModelMessagesTypeAdapter.dump_python([message], mode="json")[0]
    except Exception:
        return repr(message)[:2000]
