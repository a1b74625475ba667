"""A real worker process SIGKILLed in the middle of an agent pipeline and replaced: no model
call or tool call that completed before the kill runs again.

This module is also the worker's app: ``python -m tests.e2e.test_agent_crash`` runs a worker
whose models (pydantic-ai FunctionModels) and tools append every call to log files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import tether
from tether import Agent, Sequential, ToolContext, tool

LOGS = Path(os.environ.get("CRASH_LOGS", "."))


def _log(name: str, record: dict[str, Any]) -> None:
    with open(LOGS / name, "a", encoding="utf-8") as f:
        f.write(json.dumps({**record, "pid": os.getpid()}) + "\n")


def logged_model(node: str, tool_calls: int) -> FunctionModel:
    """Calls its tool `tool_calls` times (one per request), then answers; 0.2 s per request."""

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = sum(1 for m in messages for p in m.parts if isinstance(p, ToolReturnPart))
        _log("model_calls.jsonl", {"node": node, "turn": done})
        import asyncio

        await asyncio.sleep(0.2)
        if done < tool_calls:
            return ModelResponse(parts=[ToolCallPart(info.function_tools[0].name, {"n": done})])
        return ModelResponse(parts=[TextPart(f"{node} done after {done} tool calls")])

    return FunctionModel(respond, model_name=f"logged-{node}")


def make_tool(node: str) -> Any:
    @tool(name=f"work_{node}")
    def work(ctx: ToolContext, n: int) -> str:
        """Do one unit of work."""
        _log("tool_calls.jsonl", {"node": node, "n": n, "key": ctx.idempotency_key})
        time.sleep(0.05)
        return f"{node}-{n}"

    return work


NODES = [("alpha", 2), ("beta", 3), ("gamma", 2)]
app = tether.App(lease_seconds=1.0)
app.register(Sequential("crashy", [
    Agent(node, logged_model(node, calls), tools=[make_tool(node)]) for node, calls in NODES]))


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.e2e.test_agent_crash"], env=env,
                            stderr=subprocess.PIPE)


@pytest.mark.timeout(90)
def test_sigkill_mid_pipeline_repeats_no_completed_call(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'crash.db'}"
    env = {**os.environ, "TETHER_STORE": store, "CRASH_LOGS": str(tmp_path)}
    client = tether.App(store)
    first = _worker(env)
    second: subprocess.Popen[bytes] | None = None
    try:
        run_id = client.start("crashy", {}).id
        deadline = time.monotonic() + 30
        while True:  # kill once beta (the middle node) has journaled two model calls
            info = client.get_run(run_id)
            if sum(1 for s in info.steps if s.name == "beta.model") >= 2:
                break
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            assert time.monotonic() < deadline, "the pipeline did not reach node beta"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        at_kill = client.get_run(run_id)
        done_models = {s.seq for s in at_kill.steps
                       if s.name.endswith(".model") and s.status == "completed"}
        done_tools = {s.seq for s in at_kill.steps
                      if ".tool." in s.name and s.status == "completed"}
        completed_turns: dict[str, int] = {}
        for s in at_kill.steps:
            if s.seq in done_models:
                node = s.name.split(".")[0]
                completed_turns[node] = completed_turns.get(node, 0) + 1
        second = _worker(env)
        final = tether.RunHandle(client, run_id).result(timeout=45)
        info = client.get_run(run_id)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)

    assert info.status == "succeeded" and info.recoveries >= 1
    assert final["gamma"] == "gamma done after 2 tool calls"
    models = _records(tmp_path / "model_calls.jsonl")
    tools = _records(tmp_path / "tool_calls.jsonl")
    by_second = [c for c in models if c["pid"] == second.pid]
    by_first = [c for c in models if c["pid"] == first.pid]
    journal_models = [s for s in info.steps if s.name.endswith(".model")]
    # Every request the new worker sent is one the journal did not hold at the kill.
    assert len(by_second) == len(journal_models) - len(done_models)
    # The killed worker sent the completed calls plus at most the one in flight.
    assert len(by_first) - len(done_models) in (0, 1)
    # No (node, turn) that completed before the kill was asked again.
    assert completed_turns["alpha"] == 3 and completed_turns["beta"] >= 2
    asked_again = [c for c in by_second if c["turn"] < completed_turns.get(c["node"], 0)]
    assert asked_again == []
    # Tools: each completed tool step ran exactly once; keys are unique per journal entry.
    keys = [t["key"] for t in tools]
    for seq in done_tools:
        assert keys.count(f"{run_id}:{seq}") == 1
    assert len(tools) - len(set(keys)) <= 1  # at most the tool call in flight ran twice
    assert len(journal_models) == sum(calls + 1 for _, calls in NODES)


if __name__ == "__main__":
    app.run_worker(concurrency=10)
