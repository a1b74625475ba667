"""An MCP server as a pydantic-ai agent's toolset on tether: a real local server built with the
`mcp` package (stdio and streamable HTTP). Tool listing and each call are journaled steps; a
resumed run replays them and the server is not called again."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp.client.transports import PythonStdioTransport
from pydantic_ai import Agent
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import tether
from tests.conftest import free_port
from tests.e2e.harness import wait_until

SERVER = Path(__file__).resolve().parents[1] / "mcp_server.py"


def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    got = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
    if not got:
        return ModelResponse(parts=[ToolCallPart("book_table", {"restaurant": "Chez L", "people": 2})])
    return ModelResponse(parts=[TextPart(f"done: {got[-1].content}")])


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SERVER), "--log", str(tmp_path / "calls.jsonl"),
                             "--http", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        def listening() -> bool:
            import socket

            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, timeout=20, what="the MCP server to listen")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait(10)


def run_twice(tmp_path: Path, toolset: MCPToolset[Any]) -> tether.RunInfo:
    """Run an agent that books once, suspend the run after it, and resume it (a replay)."""
    app = tether.App(f"sqlite:///{tmp_path / 'mcp.db'}")
    agent = Agent(FunctionModel(respond), name="concierge", toolsets=[toolset],
                  capabilities=[tether.TetherDurability(app)])

    @app.workflow(name="concierge")
    async def concierge(ctx: tether.Context, prompt: str) -> str:
        result = await agent.run(prompt)
        await ctx.wait_for_signal("go")  # suspend: the resumed run replays the agent
        return result.output

    try:
        first = app.run("concierge", {"prompt": "book dinner"})
        assert first.status == "waiting"
        app.signal(first.id, "go", {})
        return app.run("concierge", run_id=first.id)
    finally:
        app.close()


def check(info: tether.RunInfo, log: Path) -> None:
    assert info.status == "succeeded"
    assert info.output == "done: booked Chez L for 2"
    names = [s.name for s in info.steps]
    assert "concierge__mcp_server__books.get_tools" in names
    (call,) = [s for s in info.steps if s.name == "concierge__mcp_server__books.call_tool"]
    assert call.input == {"restaurant": "Chez L", "people": 2}
    assert call.meta["gen_ai.tool.name"] == "book_table"
    # Booked once, although the agent ran twice (the second time from the journal).
    assert [c["tool"] for c in calls(log)] == ["book_table"]


def test_stdio_mcp_server_calls_are_journaled_and_replayed(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    toolset = MCPToolset(PythonStdioTransport(SERVER, args=["--log", str(log)]), id="books")
    check(run_twice(tmp_path, toolset), log)


def test_streamable_http_mcp_server_calls_are_journaled_and_replayed(
    tmp_path: Path, http_server: str
) -> None:
    check(run_twice(tmp_path, MCPToolset(http_server, id="books")), tmp_path / "calls.jsonl")
