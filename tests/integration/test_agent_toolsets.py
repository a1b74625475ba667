"""`tether.Agent` with pydantic-ai toolsets: a `FunctionToolset` and a real MCP server
(`MCPToolset` over stdio) as tools of a node — listed once per execution as a step, each call
a journaled step behind the same loop guard and trust gate as a `@tool`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastmcp.client.transports import PythonStdioTransport
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.toolsets import FunctionToolset

import tether

SERVER = Path(__file__).resolve().parents[1] / "mcp_server.py"


def scripted(plan: list[tuple[str, dict[str, Any]]]) -> FunctionModel:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        got = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
        if len(got) < len(plan):
            name, args = plan[len(got)]
            return ModelResponse(parts=[ToolCallPart(name, args)])
        return ModelResponse(parts=[TextPart(" | ".join(str(p.content) for p in got))])

    return FunctionModel(respond)


def test_function_and_mcp_toolsets_are_journaled_and_replayed(tmp_path: Path) -> None:
    log = tmp_path / "mcp.jsonl"
    adds: list[tuple[int, int]] = []
    maths = FunctionToolset()

    @maths.tool_plain
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        adds.append((a, b))
        return a + b

    mcp = MCPToolset(PythonStdioTransport(SERVER, args=["--log", str(log)]), id="books")
    app = tether.App(f"sqlite:///{tmp_path / 'agent.db'}")
    agent = tether.Agent(
        "planner",
        scripted([("add", {"a": 2, "b": 3}), ("book_table", {"restaurant": "Chez L", "people": 5})]),
        tools=[maths], toolsets=[mcp])

    @app.workflow(name="plan")
    async def plan(ctx: tether.Context) -> Any:
        out = await agent.execute(ctx, tether.agents.RunState(input={}))
        await ctx.wait_for_signal("go")  # the resumed run replays the node from the journal
        return out

    try:
        first = app.run("plan", {})
        assert first.status == "waiting"
        app.signal(first.id, "go", {})
        info = app.run("plan", run_id=first.id)
    finally:
        app.close()
    assert info.status == "succeeded" and info.output == "5 | booked Chez L for 5"
    names = [s.name for s in info.steps]
    assert names.count("planner.toolsets") == 1
    assert "planner.tool.add" in names and "planner.tool.book_table" in names
    listing = next(s for s in info.steps if s.name == "planner.toolsets").output
    assert {t["name"] for t in listing} == {"add", "get_weather", "book_table"}
    assert adds == [(2, 3)]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["tool"] for c in calls] == ["book_table"]


def test_toolset_tools_pass_the_trust_gate_and_schema(tmp_path: Path) -> None:
    sent: list[str] = []
    outbox = FunctionToolset()

    @outbox.tool_plain(metadata={"risk": "send"})
    def send(to: str) -> str:
        """Send a message."""
        sent.append(to)
        return f"sent to {to}"

    app = tether.App(f"sqlite:///{tmp_path / 'gate.db'}",
                     policy=tether.Policy({"read": "auto", "send": "review"}))
    app.register(tether.Agent(
        "mailer", scripted([("send", {"to": 7}), ("send", {"to": "ceo@acme.com"})]),
        tools=[outbox]))
    try:
        info = app.run("mailer", {})
        assert info.status == "waiting" and sent == []
        (approval,) = app.approvals()
        assert (approval.tool, approval.category, approval.args) == (
            "send", "send", {"to": "ceo@acme.com"})
        app.approve(approval.id, reviewer="lead")
        info = app.run("mailer", run_id=info.id)
    finally:
        app.close()
    # The first call's arguments did not match the schema: told to the model, never run.
    assert info.status == "succeeded" and sent == ["ceo@acme.com"]
    assert info.output.startswith("invalid arguments for send")


def test_a_streaming_agent_puts_its_text_on_the_run_events(tmp_path: Path) -> None:
    from tests.fake_provider import FakeProvider

    with FakeProvider(lambda request: {"content": "three little words"}) as provider:
        app = tether.App(f"sqlite:///{tmp_path / 'stream.db'}")
        app.register(tether.Agent("writer", provider.model(), stream=True))
        try:
            info = app.run("writer", {})
            events = list(tether.RunHandle(app, info.id).events())
        finally:
            app.close()
    assert info.output == "three little words"
    deltas = [e.data["delta"] for e in events if e.kind == "model_text_delta"]
    assert "".join(deltas) == "three little words" and len(deltas) == 3
    (model,) = [s for s in info.steps if s.name == "writer.model"]
    assert {e.seq for e in events if e.kind == "model_text_delta"} == {model.seq}
    assert model.meta["gen_ai.usage.input_tokens"] > 0  # priced as a plain request would be
