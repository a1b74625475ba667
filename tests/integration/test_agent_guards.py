"""What stops an agent: run and per-agent budgets, the loop guard, the scope gate."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import tether
from tether import Agent, Budget, Scope, Sequential, tool
from tether.agents.offline import ScriptedModel, Turn


def endless_tool_caller(calls: list[int]) -> FunctionModel:
    """A model that never stops calling tools (with fresh arguments, so no loop guard)."""
    counter = itertools.count()

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        return ModelResponse(parts=[ToolCallPart("search", {"q": f"page {next(counter)}"})])

    return FunctionModel(respond, model_name="endless")


@tool
def search(q: str) -> str:
    """Search."""
    return f"results for {q}"


def test_run_budget_stops_a_model_that_never_stops(sqlite_url: str) -> None:
    calls: list[int] = []
    app = tether.App(sqlite_url)
    app.register(Agent("looper", endless_tool_caller(calls), tools=[search]))
    handle = app.start("looper", {}, budget=Budget(max_llm_calls=5))
    info = app.run("looper", {}, run_id=handle.id)
    assert info.status == "failed"
    assert len(calls) == 5
    assert info.usage.llm_calls == 5
    assert info.error is not None and info.error["type"] == "BudgetExceeded"
    assert "max_llm_calls=5" in info.error["message"]
    with pytest.raises(tether.BudgetExceeded) as caught:
        handle.result(timeout=1)
    assert caught.value.limit == "max_llm_calls"


def test_agent_budget_names_the_agent(sqlite_url: str) -> None:
    calls: list[int] = []
    app = tether.App(sqlite_url)
    app.register(Sequential("p", [
        Agent("first", ScriptedModel(lambda t: "ok")),
        Agent("looper", endless_tool_caller(calls), tools=[search],
              budget=Budget(max_llm_calls=3, max_tool_calls=10)),
    ]))
    info = app.run("p", {})
    assert info.status == "failed"
    assert len(calls) == 3
    assert info.error is not None and info.error["type"] == "BudgetExceeded"
    assert "agent looper" in info.error["message"] and "max_llm_calls=3" in info.error["message"]


def test_token_budget_is_checked_with_an_estimate_before_the_call(sqlite_url: str) -> None:
    calls: list[int] = []
    app = tether.App(sqlite_url)
    app.register(Agent("looper", endless_tool_caller(calls), tools=[search],
                       budget=Budget(max_tokens=10)))
    info = app.run("looper", {"text": "x" * 400})
    assert info.status == "failed"
    assert calls == []  # the estimate alone is over the limit: nothing was paid for
    assert info.error is not None and "max_tokens=10" in info.error["message"]


def test_token_estimate_does_not_undercount_non_latin_text(sqlite_url: str) -> None:
    # Tokenizers give CJK text, emoji and most non-Latin scripts about a token per character
    # (often more), not one per four: estimating them at four characters per token let a
    # prompt four times over a token budget or spend limit through, to be paid.
    calls: list[int] = []
    app = tether.App(sqlite_url)
    app.register(Agent("looper", endless_tool_caller(calls), tools=[search], prompt="{text}",
                       model_settings={"max_tokens": 10}, budget=Budget(max_tokens=3000)))
    info = app.run("looper", {"text": "数据" * 2000})
    assert info.status == "failed"
    assert calls == []
    assert info.error is not None and "max_tokens=3000" in info.error["message"]


def test_loop_guard_stops_identical_tool_calls(sqlite_url: str) -> None:
    ran: list[str] = []

    @tool
    def fetch(url: str) -> str:
        ran.append(url)
        return "same page"

    model = ScriptedModel(lambda turn: ModelResponse(parts=[ToolCallPart("fetch", {"url": "a"})]))
    app = tether.App(sqlite_url)
    app.register(Agent("stuck", model, tools=[fetch]))
    info = app.run("stuck", {})
    assert info.status == "failed"
    assert ran == ["a", "a"]  # the third identical request trips the guard before running
    assert info.error is not None and info.error["type"] == "LoopGuardTripped"
    assert "'stuck'" in info.error["message"] and "fetch" in info.error["message"]


def test_scope_predicate_refuses_out_of_domain_requests(sqlite_url: str) -> None:
    model_calls: list[int] = []

    def answer(turn: Turn) -> Any:
        model_calls.append(1)
        return "researched"

    def only_sales(request: dict[str, Any]) -> bool | str:
        return "poem" not in request.get("task", "") or "poems are not sales research"

    agent = Agent("researcher", ScriptedModel(answer),
                  scope=Scope(domain="B2B sales research", allow=only_sales))
    app = tether.App(sqlite_url)
    app.register(agent)
    refused = app.run("researcher", {"task": "write a poem"})
    assert refused.status == "refused"
    assert refused.error is not None and "poems are not sales research" in refused.error["message"]
    assert model_calls == []
    with pytest.raises(tether.RunRefused, match="poems"):
        tether.RunHandle(app, refused.id).result(timeout=1)
    ok = app.run("researcher", {"task": "research Acme"})
    assert ok.status == "succeeded" and ok.output == "researched"


def test_scope_classifier_is_a_journaled_model_call(sqlite_url: str) -> None:
    classified: list[str] = []

    def classify(turn: Turn) -> Any:
        classified.append(turn.prompt)
        in_scope = "weather" not in turn.prompt
        return {"in_scope": in_scope, "reason": "weather is not sales" if not in_scope else "ok"}

    agent = Agent("researcher", ScriptedModel(lambda t: "done"),
                  scope=Scope(domain="B2B sales research", classifier=ScriptedModel(classify)))
    app = tether.App(sqlite_url)
    app.register(agent)
    info = app.run("researcher", {"task": "what's the weather"})
    assert info.status == "refused"
    assert [s.name for s in info.steps] == ["researcher-scope.model"]
    assert info.steps[0].usage.llm_calls == 1
    assert info.error is not None and info.error["reason"].endswith("weather is not sales")
    assert app.run("researcher", {"task": "research Acme"}).status == "succeeded"
    assert len(classified) == 2


def test_spend_limits_are_checked_before_new_calls_not_replayed_ones(sqlite_url: str) -> None:
    from tether.agents.review import decide_review
    from tether.observe.limits import SpendLimit, set_spend_limits

    sent: list[str] = []
    calls: list[int] = []

    @tool(risk="send")
    def send(to: str) -> str:
        sent.append(to)
        return "sent"

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        return ModelResponse(parts=[ToolCallPart("send", {"to": "dana"})])

    app = tether.App(sqlite_url, policy=tether.Policy({"send": "review"}))
    app.register(Agent("mailer", FunctionModel(respond), tools=[send]))
    run = app.run("mailer", {}, labels={"team": "sales"})
    assert run.status == "waiting" and calls == [1]
    set_spend_limits(app, [SpendLimit("team", "sales", max_usd=0.0)])  # nothing new may be paid
    decide_review(app, run.id, approved=True, reviewer="lead")
    info = app.run("mailer", {}, run_id=run.id)
    # The recorded request replayed without a check; the tool ran; the next new request stopped.
    assert sent == ["dana"] and calls == [1]
    assert info.status == "failed"
    assert info.error is not None and info.error["type"] == "BudgetExceeded"
    assert "team=sales" in info.error["message"]


def test_tool_call_budget_stops_before_the_next_tool_runs(sqlite_url: str) -> None:
    ran: list[str] = []

    @tool
    def fetch(page: str) -> str:
        ran.append(page)
        return "a page"

    counter = itertools.count()

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("fetch", {"page": str(next(counter))})])

    app = tether.App(sqlite_url)
    app.register(Agent("crawler", FunctionModel(respond), tools=[fetch],
                       budget=Budget(max_tool_calls=2)))
    info = app.run("crawler", {})
    assert info.status == "failed"
    assert ran == ["0", "1"]
    assert info.error is not None and "max_tool_calls=2" in info.error["message"]
    assert "agent crawler" in info.error["message"]


def test_a_model_repeating_one_call_forever_stops_at_its_model_call_budget(
    sqlite_url: str,
) -> None:
    ran: list[str] = []
    model_calls: list[int] = []

    @tool
    def fetch(url: str) -> str:
        ran.append(url)
        return "same page"

    def forever(turn: object) -> ModelResponse:
        model_calls.append(1)
        return ModelResponse(parts=[ToolCallPart("fetch", {"url": "a"})])

    app = tether.App(sqlite_url)
    app.register(Agent("stuck", ScriptedModel(forever), tools=[fetch]))
    info = app.run("stuck", {}, budget=tether.Budget(max_llm_calls=6))
    assert info.status == "failed"
    assert info.error is not None and info.error["type"] == "BudgetExceeded"
    assert "max_llm_calls=6" in info.error["message"]
    assert len(model_calls) == 6
    assert ran == ["a", "a"]  # the loop guard still kept the tool from running again
