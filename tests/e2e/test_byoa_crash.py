"""A plain pydantic-ai agent with `TetherDurability` under real `tether worker` processes: a
worker SIGKILLed mid-run is replaced, and no model call the journal completed is billed twice
by the (fake, billing) provider, nor any completed tool call run twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import tether
from tests.e2e.harness import Workers, wait_until
from tests.fake_provider import FakeProvider

TOOL_TURNS = 4


def responder(request: dict[str, Any]) -> dict[str, Any]:
    """Look something up four times (one call per request), then give the structured answer."""
    done = sum(1 for m in request["messages"] if m.get("role") == "tool")
    if done < TOOL_TURNS:
        return {"tool_calls": [{"name": "lookup", "arguments": {"q": f"topic-{done}"}}]}
    return {"tool_calls": [{"name": "final_result",
                            "arguments": {"summary": f"answered after {done}", "sources": done}}]}


def turn_of(request: dict[str, Any]) -> int:
    return sum(1 for m in request["messages"] if m.get("role") == "tool")


@pytest.mark.timeout(120)
def test_sigkill_bills_no_completed_model_call_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = f"sqlite:///{tmp_path / 'byoa.db'}"
    provider = FakeProvider(responder, latency=0.25).start()
    monkeypatch.setenv("BYOA_PROVIDER_URL", provider.url)
    monkeypatch.setenv("BYOA_LOGS", str(tmp_path))
    workers = Workers(store, tmp_path / "ledger", tmp_path)
    client = tether.App(store)
    try:
        workers.start("first", app="tests.e2e.byoa_app:app")
        run_id = client.start("support", {"prompt": "How do I reset my password?"}).id

        def two_model_steps() -> bool:
            steps = client.get_run(run_id).steps
            return sum(1 for s in steps if s.name.startswith("support__model.request")
                       and s.status == "completed") >= 2

        wait_until(two_model_steps, timeout=30, what="two journaled model requests")
        workers.kill("first")
        at_kill = client.get_run(run_id)
        done_models = sum(1 for s in at_kill.steps
                          if s.name.startswith("support__model.request") and s.status == "completed")
        billed_at_kill = len(provider.requests)
        workers.start("second", app="tests.e2e.byoa_app:app")
        output = tether.RunHandle(client, run_id).result(timeout=60)
        info = client.get_run(run_id)
    except BaseException:
        print(workers.dump_logs())
        raise
    finally:
        workers.stop_all()
        provider.stop()

    assert info.status == "succeeded" and info.recoveries >= 1
    assert output == {"summary": f"answered after {TOOL_TURNS}", "sources": TOOL_TURNS}
    # Billing: every conversation turn the journal completed before the kill was sent once.
    turns = [turn_of(r) for r in provider.requests]
    for turn in range(done_models):
        assert turns.count(turn) == 1, (turn, turns)
    # At most the request in flight at the kill was sent again; nothing else was billed twice.
    assert len(turns) - len(set(turns)) <= 1
    assert billed_at_kill - done_models in (0, 1)
    assert sorted(set(turns)) == list(range(TOOL_TURNS + 1))
    # Tools: one execution per journaled tool step, except one cut short by the kill.
    calls = [json.loads(line) for line in (tmp_path / "tool_calls.jsonl").read_text().splitlines()]
    keys = [c["key"] for c in calls]
    tool_steps = [s for s in info.steps if ".call_tool:lookup" in s.name]
    assert len(tool_steps) == TOOL_TURNS
    for step in at_kill.steps:
        if ".call_tool:" in step.name and step.status == "completed":
            assert keys.count(f"{run_id}:{step.seq}") == 1
    assert len(keys) - len(set(keys)) <= 1
    # Priced at record time and fingerprinted, like tether.Agent's model steps.
    assert info.tokens > 0 and info.steps[0].meta.get("tether.tools.hash")
