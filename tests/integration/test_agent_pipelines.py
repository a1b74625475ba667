"""Pipelines: state flow between nodes, concurrent Parallel branches with deterministic replay,
Loop, and failures that name their node."""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest

import tether
from tether import Agent, Loop, Parallel, Policy, Sequential, tool
from tether.agents.offline import ScriptedModel, Turn, call, output
from tether.agents.review import decide_review


class Plan(pydantic.BaseModel):
    queries: list[str]


def test_sequential_state_flows_by_node_name(sqlite_url: str) -> None:
    seen: dict[str, str] = {}

    def researcher(turn: Turn) -> Any:
        seen["researcher"] = turn.instructions
        return {"industry": "robotics"}

    def planner(turn: Turn) -> Any:
        seen["planner"] = turn.instructions
        seen["planner_prompt"] = turn.prompt
        return {"queries": [f"{turn.state()['outputs']['researcher']['industry']} automation"]}

    model = ScriptedModel({"researcher": researcher, "planner": planner})
    pipeline = Sequential("research", [
        Agent("researcher", model, "Research {company}.", output_type=dict[str, str]),
        Agent("planner", model, "Plan searches for a {researcher.industry} company named "
              "{input.company}; reply {\"queries\": [...]}", output_type=Plan),
    ])
    app = tether.App(sqlite_url)
    app.register(pipeline)
    info = app.run("research", {"company": "Acme"})
    assert info.status == "succeeded", info.error
    assert info.output == {"researcher": {"industry": "robotics"},
                           "planner": {"queries": ["robotics automation"]}}
    assert seen["researcher"] == "Research Acme."
    assert seen["planner"].startswith("Plan searches for a robotics company named Acme;")
    assert '{"queries": [...]}' in seen["planner"]  # JSON braces are left alone


def test_unknown_placeholder_fails_naming_the_node(sqlite_url: str) -> None:
    model = ScriptedModel(lambda turn: "x")
    app = tether.App(sqlite_url)
    app.register(Sequential("p", [Agent("writer", model, "Use {researcher.summary}")]))
    info = app.run("p", {})
    assert info.status == "failed"
    assert info.error is not None
    assert "'writer'" in info.error["message"] and "researcher.summary" in info.error["message"]


def branch_agent(name: str, model: ScriptedModel, fast_fetched: asyncio.Event) -> Agent:
    @tool(name=f"fetch_{name}")
    async def fetch(page: int) -> str:
        if name == "fast":
            fast_fetched.set()
        else:
            # The slow branch (listed first) gets its page only once the fast branch has
            # fetched one: run one after the other, the branches would never both finish.
            await asyncio.wait_for(fast_fetched.wait(), 5)
        return f"{name}-{page}"

    return Agent(name, model, tools=[fetch])


def test_parallel_branches_run_concurrently_and_replay_deterministically(sqlite_url: str) -> None:
    def handler(turn: Turn) -> Any:
        if turn.turn < 3:
            return call(turn.tools[0], page=turn.turn)
        return ",".join(str(r) for _, r in turn.tool_results)

    # Different latencies make the branches finish their steps in a different order.
    model = ScriptedModel(handler, latency=0.05)
    fast_model = ScriptedModel(handler)

    @tool(risk="send")
    def notify(text: str) -> str:
        return "ok"

    notifier = Agent("notifier", ScriptedModel(
        lambda t: call("notify", text="done") if t.turn == 0 else "notified"), tools=[notify])
    fast_fetched = asyncio.Event()
    pipeline = Sequential("fan", [
        Parallel("both", [branch_agent("slow", model, fast_fetched),
                          branch_agent("fast", fast_model, fast_fetched)]),
        notifier,
    ])
    app = tether.App(sqlite_url, policy=Policy({"read": "auto", "send": "review"}))
    app.register(pipeline)
    info = app.run("fan", {})
    assert info.status == "waiting", info.error
    assert fast_fetched.is_set()
    decide_review(app, info.id, approved=True, reviewer="reviewer")
    info = app.run("fan", {}, run_id=info.id)  # replays both branches from the journal
    assert info.status == "succeeded", info.error
    assert info.output["both"] == {"slow": "slow-0,slow-1,slow-2", "fast": "fast-0,fast-1,fast-2"}
    assert info.output["notifier"] == "notified"
    names = [s.name for s in info.steps]
    assert names.count("slow.model") == 4 and names.count("fast.model") == 4


def test_loop_until_and_max_iterations(sqlite_url: str) -> None:
    drafts: list[int] = []

    def writer(turn: Turn) -> Any:
        iteration = turn.state()["outputs"]["refine_iteration"]
        drafts.append(iteration)
        return {"text": "draft " + str(iteration), "good": iteration >= 2}

    model = ScriptedModel({"writer": writer})
    loop = Loop("refine", Agent("writer", model, output_type=dict[str, Any]), max_iterations=5,
                until=lambda state: bool(state.outputs["writer"]["good"]))
    app = tether.App(sqlite_url)
    app.register(loop)
    info = app.run("refine", {})
    assert info.status == "succeeded", info.error
    assert info.output == {"iterations": 2, "outputs": {"writer": {"text": "draft 2", "good": True}}}
    assert drafts == [1, 2]

    capped = Loop("capped", Agent("w2", ScriptedModel(lambda t: "again")), max_iterations=3,
                  until=lambda state: False)
    app.register(capped)
    assert app.run("capped", {}).output["iterations"] == 3


def test_failing_node_names_itself(sqlite_url: str) -> None:
    def broken(turn: Turn) -> Any:
        raise ValueError("model exploded")

    first = Agent("first", ScriptedModel(lambda t: "fine"))
    second = Agent("second", ScriptedModel(broken), retry=tether.Retry(max_attempts=2,
                                                                       initial_delay=0.01))
    app = tether.App(sqlite_url)
    app.register(Sequential("p", [first, second]))
    info = app.run("p", {})
    assert info.status == "failed"
    assert info.error is not None
    assert "node 'second'" in info.error["message"] and "model exploded" in info.error["message"]
    assert info.error["details"]["node"] == "second"
    assert [s.attempts for s in info.steps if s.name == "second.model"] == [2]
    assert output  # the helper is exported for scripts


def test_pipeline_construction_errors_name_the_problem() -> None:
    model = ScriptedModel(lambda t: "x")
    with pytest.raises(tether.UserError, match="two nodes are named 'a'"):
        Sequential("p", [Agent("a", model), Agent("a", model)])
    with pytest.raises(tether.UserError, match="do not nest"):
        Parallel("outer", [Sequential("s", [Parallel("inner", [Agent("b", model)])]),
                           Agent("c", model)])
