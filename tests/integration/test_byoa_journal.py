"""What `TetherDurability` journals, and that a replay hands the agent what the first execution
saw: the response a model step has just received is used as it is (not rebuilt from its JSON),
so the journal must rebuild an equal one, and a tool's result must look the same both times."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pydantic
import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import tether

_apps: list[tether.App] = []


@pytest.fixture(autouse=True)
def close_apps() -> Iterator[None]:
    yield
    while _apps:
        _apps.pop().close()


class Order(pydantic.BaseModel):
    id: str
    status: str


def test_a_replay_sees_the_responses_and_tool_results_of_the_first_execution(
    store_url: str,
) -> None:
    app = tether.App(store_url)
    _apps.append(app)
    requests: list[int] = []
    seen: list[tuple[list[ModelResponse], list[Any]]] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        requests.append(len(messages))
        done = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
        if not done:
            return ModelResponse(parts=[ToolCallPart("lookup_order", {"order_id": "1042"})],
                                 model_name="fake-1")
        return ModelResponse(parts=[TextPart("order 1042 shipped")], model_name="fake-1")

    agent = Agent(FunctionModel(respond), name="support",
                  capabilities=[tether.TetherDurability(app)])

    @agent.tool_plain
    def lookup_order(order_id: str) -> Order:
        """Look an order up."""
        return Order(id=order_id, status="shipped")

    @app.workflow(name="support_then_wait")
    async def support_then_wait(ctx: tether.Context) -> str:
        result = await agent.run("where is order 1042?")
        messages = result.all_messages()
        seen.append((
            [m for m in messages if isinstance(m, ModelResponse)],
            [p.content for m in messages for p in m.parts if isinstance(p, ToolReturnPart)],
        ))
        await ctx.wait_for_signal("go")  # the run suspends; its next execution replays the agent
        return result.output

    info = app.run("support_then_wait")
    assert info.status == "waiting" and len(requests) == 2
    app.signal(info.id, "go", {})
    info = app.run("support_then_wait", run_id=info.id)
    assert info.status == "succeeded" and info.output == "order 1042 shipped"
    assert len(requests) == 2  # replayed from the journal: the model was not asked again

    (first_responses, first_results), (replayed_responses, replayed_results) = seen
    assert replayed_responses == first_responses
    assert first_results == replayed_results == [{"id": "1042", "status": "shipped"}]
    assert [type(r) for r in first_results] == [dict]  # as a replay rebuilds it from JSON

    model_steps = [s for s in info.steps if s.name == "support__model.request"]
    assert len(model_steps) == 2
    assert model_steps[0].output["parts"][0]["tool_name"] == "lookup_order"
    assert model_steps[1].output["parts"][0]["content"] == "order 1042 shipped"


def test_the_tools_hash_is_the_schemas_hash_computed_once_while_they_stay_the_same(
    store_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tether.agents.durability as durability
    from tether.agents.models import short_hash
    from tether.observe import names

    hashed: list[Any] = []

    def counting(value: Any) -> str:
        hashed.append(value)
        return short_hash(value)

    monkeypatch.setattr(durability, "short_hash", counting)
    app = tether.App(store_url)
    _apps.append(app)

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if not any(isinstance(p, ToolReturnPart) for m in messages for p in m.parts):
            return ModelResponse(parts=[ToolCallPart("lookup_order", {"order_id": "7"})])
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(respond), name="support",
                  capabilities=[tether.TetherDurability(app)])

    @agent.tool_plain
    def lookup_order(order_id: str) -> str:
        """Look an order up."""
        return "shipped"

    @app.workflow(name="twice")
    async def twice(ctx: tether.Context) -> str:
        return (await agent.run("where is order 7?")).output

    info = app.run("twice")
    assert info.status == "succeeded"
    hashes = [s.meta[names.TOOLS_HASH] for s in info.steps if s.name == "support__model.request"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    # pydantic-ai copies the definitions per request: equal, so not encoded and hashed again
    assert len([v for v in hashed if isinstance(v, list)]) == 1
    schema = {"additionalProperties": False, "properties": {"order_id": {"type": "string"}},
              "required": ["order_id"], "type": "object"}
    assert hashes[0] == short_hash([["lookup_order", schema]])


def test_a_request_moved_to_another_model_is_journaled_and_definitions_are_not_copied(
    store_url: str,
) -> None:
    from pydantic_ai import RetryModelRequest
    from pydantic_ai.capabilities import AbstractCapability

    app = tether.App(store_url)
    _apps.append(app)
    called = {"primary": 0, "backup": 0}
    schemas: list[object] = []

    def primary(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        called["primary"] += 1
        raise RuntimeError("overloaded")

    def backup(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        called["backup"] += 1
        schemas.append(info.function_tools[0].parameters_json_schema)
        if not any(isinstance(p, ToolReturnPart) for m in messages for p in m.parts):
            return ModelResponse(parts=[ToolCallPart("lookup", {"q": "x"})])
        return ModelResponse(parts=[TextPart("done")])

    backup_model = FunctionModel(backup, model_name="backup")

    class MoveOnError(AbstractCapability[Any]):
        async def on_model_request_error(self, ctx: Any, *, request_context: Any,
                                         error: Exception) -> ModelResponse:
            raise RetryModelRequest(model=backup_model)

    agent = Agent(FunctionModel(primary, model_name="primary"), name="support", capabilities=[
        tether.TetherDurability(app, models={"backup": backup_model},
                                model_retry=tether.Retry(max_attempts=1)),
        MoveOnError()])

    @agent.tool_plain
    def lookup(q: str) -> str:
        """Look it up."""
        return "found"

    @app.workflow(name="moved")
    async def moved(ctx: tether.Context) -> str:
        output = (await agent.run("hi")).output
        await ctx.wait_for_signal("go")
        return output

    info = app.run("moved")
    assert info.status == "waiting" and called == {"primary": 2, "backup": 2}
    # The attempt a hook moved to the backup model is a step of its own (the durable base's
    # per-attempt hook still runs) ...
    assert [s.name for s in info.steps if s.status == "completed"].count(
        "support__model.request.backup") == 2
    app.signal(info.id, "go", {})
    info = app.run("moved", run_id=info.id)
    assert info.status == "succeeded" and info.output == "done"
    assert called == {"primary": 2, "backup": 2}  # replayed: neither model asked again
    # ... while pydantic-ai no longer copies the tool definitions for every request for it.
    assert schemas[0] is schemas[1]


def test_another_capabilitys_prepare_hook_still_edits_a_copy(store_url: str) -> None:
    from pydantic_ai.capabilities import AbstractCapability

    app = tether.App(store_url)
    _apps.append(app)
    descriptions: list[object] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        descriptions.append(info.function_tools[0].parameters_json_schema.get("description"))
        if not any(isinstance(p, ToolReturnPart) for m in messages for p in m.parts):
            return ModelResponse(parts=[ToolCallPart("lookup", {"q": "x"})])
        return ModelResponse(parts=[TextPart("done")])

    class EditInPlace(AbstractCapability[Any]):
        async def prepare_model_request(self, ctx: Any, request_context: Any) -> Any:
            schema = request_context.model_request_parameters.function_tools[0].parameters_json_schema
            schema["description"] = f"{schema.get('description') or ''}+"
            return request_context

    agent = Agent(FunctionModel(respond), name="support",
                  capabilities=[tether.TetherDurability(app), EditInPlace()])

    @agent.tool_plain
    def lookup(q: str) -> str:
        """Look it up."""
        return "found"

    @app.workflow(name="edited")
    async def edited(ctx: tether.Context) -> str:
        return (await agent.run("hi")).output

    assert app.run("edited").status == "succeeded"
    assert descriptions == ["+", "+"]  # each request edited its own copy
