"""Pipelines that degrade instead of dying: optional nodes, fallback nodes, fallback models.

Each test counts what really ran (model requests per node, tool invocations) so that a node
re-run, a skipped node that still ran, or a failure absorbed where it must not be shows up.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from pydantic_ai.models.fallback import FallbackModel

import tether
from tests.fake_provider import FakeProvider, running
from tether import Agent, Budget, Fallback, Optional, Policy, Scope, Sequential, tool
from tether.agents.offline import ScriptedModel, Turn, call


def counting_model(calls: Counter[str], failing: set[str]) -> ScriptedModel:
    """Nodes in `failing` always answer nothing usable (their output stays invalid)."""

    def handler(turn: Turn) -> Any:
        calls[turn.node] += 1
        if turn.node in failing:
            return ""  # an empty answer is re-asked, then the node fails with OutputInvalid
        return f"{turn.node} done"

    return ScriptedModel(handler)


def test_optional_middle_node_fails_and_the_run_succeeds_degraded(store_url: str) -> None:
    calls: Counter[str] = Counter()
    model = counting_model(calls, failing={"case_studies"})
    pipeline = Sequential("titanium", [
        Agent("research", model, output_retries=1),
        Optional(Agent("case_studies", model, output_retries=1), default=[]),
        Agent("draft", model, output_retries=1),
    ])
    app = tether.App(store_url)
    app.register(pipeline)
    info = app.run("titanium", {"company": "Acme"})

    assert info.status == "succeeded", info.error
    assert info.output == {"research": "research done", "case_studies": [], "draft": "draft done"}
    assert [d["node"] for d in info.degraded] == ["case_studies"]
    assert info.degraded[0]["how"] == "skipped"
    assert info.degraded[0]["error"]["type"] == "OutputInvalid"
    # The later node ran once; the failed node's own attempts stay visible in the journal.
    assert calls == Counter({"research": 1, "case_studies": 2, "draft": 1})
    assert [s.name for s in info.steps if s.name.startswith("case_studies")][-1] == (
        "case_studies.skipped")
    assert [r.id for r in app.list_runs(degraded=True)] == [info.id]
    assert app.list_runs(degraded=False) == []

    # Replaying the finished journal on a fresh App (a resumed run would do this) re-runs
    # nothing: the failure and the decision come from the journal.
    again = tether.App(store_url)
    again.register(pipeline)
    assert again.run("titanium", run_id=info.id).status == "succeeded"
    assert calls == Counter({"research": 1, "case_studies": 2, "draft": 1})


def test_a_run_that_degraded_nothing_is_not_marked(sqlite_url: str) -> None:
    calls: Counter[str] = Counter()
    model = counting_model(calls, failing=set())
    app = tether.App(sqlite_url)
    app.register(Sequential("p", [Optional(Agent("a", model), default="x")]))
    info = app.run("p", {})
    assert info.status == "succeeded" and info.output == {"a": "a done"}
    assert info.degraded == []
    assert app.list_runs(degraded=True) == []


def test_without_optional_the_same_failure_fails_the_run(sqlite_url: str) -> None:
    calls: Counter[str] = Counter()
    model = counting_model(calls, failing={"b"})
    app = tether.App(sqlite_url)
    app.register(Sequential("p", [Agent("b", model, output_retries=0), Agent("c", model)]))
    info = app.run("p", {})
    assert info.status == "failed"
    assert calls["c"] == 0


def test_optional_node_refused_by_its_scope_uses_the_default(sqlite_url: str) -> None:
    calls: Counter[str] = Counter()
    model = counting_model(calls, failing=set())
    narrow = Agent("legal", model, scope=Scope(domain="contracts", allow=lambda _: "not a contract"))
    app = tether.App(sqlite_url)
    app.register(Sequential("p", [Optional(narrow, default="n/a"), Agent("after", model)]))
    info = app.run("p", {"text": "hello"})
    assert info.status == "succeeded", info.error
    assert info.output == {"legal": "n/a", "after": "after done"}
    assert info.degraded[0]["error"]["type"] == "RunRefused"
    assert calls["legal"] == 0


def test_a_run_budget_is_never_absorbed_by_an_optional_node(sqlite_url: str) -> None:
    calls: Counter[str] = Counter()
    model = counting_model(calls, failing=set())
    app = tether.App(sqlite_url)
    app.register(Sequential("p", [Agent("first", model), Optional(Agent("second", model)),
                                  Agent("third", model)]))
    info = app.run("p", {}, budget=Budget(max_llm_calls=1))
    assert info.status == "failed"
    assert info.error is not None and info.error["type"] == "BudgetExceeded"
    assert calls == Counter({"first": 1})
    assert info.degraded == []


def test_a_skipped_node_never_reaches_its_gated_tool(sqlite_url: str) -> None:
    sent: list[str] = []

    @tool(risk="send")
    async def send_email(to: str) -> str:
        sent.append(to)
        return "sent"

    def handler(turn: Turn) -> Any:
        if turn.node == "sender":
            # Asks for a tool it does not own until the node gives up (bad tool calls).
            return call("delete_everything", reason="x")
        return "ok"

    model = ScriptedModel(handler)
    app = tether.App(sqlite_url, policy=Policy({"send": "review"}, default="review"))
    app.register(Sequential("p", [
        Optional(Agent("sender", model, tools=[send_email], tool_retries=1), default=None),
        Agent("after", model),
    ]))
    info = app.run("p", {})
    assert info.status == "succeeded", info.error
    assert [d["node"] for d in info.degraded] == ["sender"]
    assert sent == []
    assert app.approvals(status=None) == []


def test_fallback_runs_the_backup_only_when_the_primary_fails(store_url: str) -> None:
    calls: Counter[str] = Counter()
    model = counting_model(calls, failing={"drafter"})
    app = tether.App(store_url)
    app.register(Sequential("p", [
        Agent("research", model),
        Fallback(Agent("drafter", model, output_retries=0), Agent("drafter_plain", model)),
        Agent("after", model),
    ]))
    info = app.run("p", {})
    assert info.status == "succeeded", info.error
    assert info.output["drafter"] == "drafter_plain done"
    assert info.degraded[0]["how"] == "fallback" and info.degraded[0]["backup"] == "drafter_plain"
    assert calls == Counter({"research": 1, "drafter": 1, "drafter_plain": 1, "after": 1})

    healthy: Counter[str] = Counter()
    fine = counting_model(healthy, failing=set())
    app2 = tether.App(store_url)
    app2.register(Sequential("q", [Fallback(Agent("drafter", fine), Agent("drafter_plain", fine))]))
    ok = app2.run("q", {})
    assert ok.output == {"drafter": "drafter done"} and ok.degraded == []
    assert healthy == Counter({"drafter": 1})


def test_a_failing_backup_fails_the_run(sqlite_url: str) -> None:
    calls: Counter[str] = Counter()
    model = counting_model(calls, failing={"a", "b"})
    app = tether.App(sqlite_url)
    app.register(Sequential("p", [Fallback(Agent("a", model, output_retries=0),
                                           Agent("b", model, output_retries=0))]))
    info = app.run("p", {})
    assert info.status == "failed"
    assert info.error is not None and "'b'" in info.error["message"]


def _answer(request: dict[str, Any]) -> dict[str, Any]:
    return {"content": f"answered by {request['model']}",
            "usage": {"prompt_tokens": 1000, "completion_tokens": 500}}


@pytest.mark.parametrize("as_list", [True, False], ids=["list", "FallbackModel"])
def test_fallback_model_answers_when_the_first_is_down(sqlite_url: str, as_list: bool) -> None:
    with running(_answer) as primary_server, running(_answer) as backup_server:
        primary_server.fail_next("500", times=10)
        primary = primary_server.model("gpt-4.1-mini")
        backup = backup_server.model("gpt-4o-mini")
        models: Any = [primary, backup] if as_list else FallbackModel(primary, backup)
        agent = Agent("writer", models, retry=tether.Retry(max_attempts=3, initial_delay=0.01))
        app = tether.App(sqlite_url)
        app.register(agent)
        info = app.run("writer", {})
        assert info.status == "succeeded", info.error
        assert info.output == "answered by gpt-4o-mini"
        # The primary was tried with its own retries first, then the backup answered once.
        assert len(primary_server.requests) == 3 and backup_server.answered == 1
        failed, answered = [s for s in info.steps if s.name == "writer.model"]
        assert failed.status == "failed" and failed.attempts == 3
        assert answered.status == "completed"
        assert answered.meta["gen_ai.request.model"] == "gpt-4o-mini"
        # Spend is priced for, and attributed to, the model that answered.
        assert answered.usage.cost_usd > 0
        assert info.cost_usd == answered.usage.cost_usd


def test_fallback_model_is_sticky_within_a_node(sqlite_url: str) -> None:
    requests: Counter[str] = Counter()

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        requests[request["model"]] += 1
        if request["model"] == "gpt-4o-mini" and requests["gpt-4o-mini"] == 1:
            return {"tool_calls": [{"name": "lookup", "arguments": {"q": "x"}}]}
        return {"content": "final"}

    @tool
    async def lookup(q: str) -> str:
        return q

    with running(answer) as server:
        primary: FakeProvider = server
        server.fail_next("400")  # a rejected request fails at once, no retry
        agent = Agent("writer", [primary.model("gpt-4.1-mini"), primary.model("gpt-4o-mini")],
                      tools=[lookup])
        app = tether.App(sqlite_url)
        app.register(agent)
        info = app.run("writer", {})
        assert info.status == "succeeded", info.error
        # After the primary failed, the second request went straight to the backup.
        assert requests == Counter({"gpt-4o-mini": 2})


def test_the_dashboard_and_the_api_show_what_a_run_did_without(sqlite_url: str) -> None:
    from fastapi.testclient import TestClient

    from tether.server import create_app
    from tether.server.auth import Auth

    calls: Counter[str] = Counter()
    model = counting_model(calls, failing={"case_studies"})
    app = tether.App(sqlite_url)
    app.register(Sequential("p", [Optional(Agent("case_studies", model, output_retries=0),
                                           default=[]), Agent("draft", model)]))
    info = app.run("p", {})
    with TestClient(create_app(app, auth=Auth(local_user="tester"))) as http:
        page = http.get(f"/runs/{info.id}")
        assert page.status_code == 200
        assert "degraded" in page.text and "case_studies" in page.text
        assert "skipped, its default used" in page.text
        shown = http.get(f"/api/runs/{info.id}").json()
        assert [d["node"] for d in shown["degraded"]] == ["case_studies"]


def test_stats_count_a_skipped_nodes_calls_not_the_skip_decision(sqlite_url: str) -> None:
    """The `{node}.skipped` / `{node}.fallback` decision is a bookkeeping step of the node: in
    `tether stats` it must not count as one of the node's steps, or a node whose every call
    failed shows a 50 % failure rate and a p50 latency of about zero."""
    import asyncio

    from tether.observe import stats_report

    def handler(turn: Turn) -> Any:
        if turn.node in ("flaky", "flaky_too"):
            raise RuntimeError("provider down")
        return f"{turn.node} done"

    model = ScriptedModel(handler)
    once = tether.Retry(max_attempts=1)
    app = tether.App(sqlite_url)
    app.register(Sequential("p", [
        Optional(Agent("flaky", model, retry=once), default="none"),
        Fallback(Agent("flaky_too", model, retry=once), Agent("backup", model)),
    ]))
    try:
        info = app.run("p", {})
        rows = {r.group["node"]: r for r in asyncio.run(stats_report(app, "node"))}
    finally:
        app.close()
    assert info.status == "succeeded", info.error
    assert [d["how"] for d in info.degraded] == ["skipped", "fallback"]
    for node in ("flaky", "flaky_too"):
        row = rows[node]
        assert (row.steps, row.failures, row.failure_rate) == (1, 1, 1.0), node
        assert len(row.latencies) == 1, node
    assert rows["backup"].failures == 0
