"""The agent loop on the engine: journaled model and tool steps, replay, structured output,
bad tool calls, scope of tools, the trust gate."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import tether
from tether import Agent, Policy, ToolContext, tool
from tether.agents.review import decide_review
from tether.observe import names


class Profile(pydantic.BaseModel):
    name: str
    employees: int


def scripted(replies: list[Any], calls: list[list[ModelMessage]]) -> FunctionModel:
    """A FunctionModel answering `replies` in order and logging every request it gets."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(list(messages))
        reply = replies[min(len(calls), len(replies)) - 1]
        if isinstance(reply, ModelResponse):
            return reply
        if isinstance(reply, tuple):
            return ModelResponse(parts=[ToolCallPart(reply[0], reply[1])])
        return ModelResponse(parts=[TextPart(str(reply))])

    return FunctionModel(respond, model_name="logged")


def final(**fields: Any) -> tuple[str, dict[str, Any]]:
    return ("final_result", fields)


def test_tool_calls_and_output_are_journaled_steps(sqlite_url: str) -> None:
    looked_up: list[str] = []

    @tool(risk="read")
    async def lookup(name: str) -> dict[str, Any]:
        """Find a company."""
        looked_up.append(name)
        return {"name": name, "employees": 120}

    calls: list[list[ModelMessage]] = []
    model = scripted([("lookup", {"name": "Acme"}), final(name="Acme", employees=120)], calls)
    app = tether.App(sqlite_url)
    app.register(Agent("researcher", model, "Research {company}.", tools=[lookup],
                       output_type=Profile))
    info = app.run("researcher", {"company": "Acme"})

    assert info.status == "succeeded", info.error
    assert info.output == {"name": "Acme", "employees": 120}
    assert looked_up == ["Acme"]
    assert [s.name for s in info.steps] == [
        "researcher.model", "researcher.tool.lookup", "researcher.model"]
    assert calls[0][0].instructions == "Research Acme."  # templated from the input
    chat = info.steps[0]
    assert chat.usage.llm_calls == 1 and chat.usage.input_tokens > 0
    assert chat.usage.unpriced_calls == 1  # FunctionModel has no price: marked, not hidden
    assert chat.meta[names.OPERATION_NAME] == "chat"
    assert chat.meta[names.NODE] == "researcher"
    assert chat.meta[names.REQUEST_MODEL] == "logged"
    assert chat.meta[names.PRICE_SOURCE] == "unpriced"
    tool_step = info.steps[1]
    assert tool_step.usage.tool_calls == 1
    assert tool_step.meta[names.TOOL_NAME] == "lookup" and tool_step.meta[names.RISK] == "read"
    assert tool_step.input == {"name": "Acme"}


def test_review_suspends_and_resume_replays_without_calling_again(sqlite_url: str) -> None:
    sent: list[tuple[str, str]] = []

    @tool(risk="send")
    def send(ctx: ToolContext, to: str, body: str) -> str:
        """Send an email."""
        sent.append((ctx.idempotency_key, to))
        return "sent"

    calls: list[list[ModelMessage]] = []
    model = scripted([("send", {"to": "a@b.c", "body": "hi"}), "done"], calls)
    app = tether.App(sqlite_url, policy=Policy({"send": "review"}))
    app.register(Agent("mailer", model, "Send it.", tools=[send]))
    info = app.run("mailer", {})
    assert info.status == "waiting" and (info.waiting_for or "").startswith("approval")
    assert len(calls) == 1 and sent == []

    decide_review(app, info.id, approved=True, reviewer="reviewer")
    info = app.run("mailer", {}, run_id=info.id)
    assert info.status == "succeeded", info.error
    assert info.output == "done"
    assert len(calls) == 2  # the first request replayed from the journal, not sent again
    assert len(sent) == 1 and sent[0][0].startswith(info.id + ":")


def test_rejected_call_goes_back_to_the_model(sqlite_url: str) -> None:
    @tool(risk="send")
    def send(to: str) -> str:
        raise AssertionError("a rejected call must never run")

    calls: list[list[ModelMessage]] = []
    model = scripted([("send", {"to": "x"}), "gave up"], calls)
    app = tether.App(sqlite_url, policy=Policy({"send": "review"}))
    app.register(Agent("mailer", model, tools=[send]))
    run = app.run("mailer", {})
    decide_review(app, run.id, approved=False, reviewer="reviewer", reason="wrong person")
    info = app.run("mailer", {}, run_id=run.id)
    assert info.output == "gave up"
    assert "wrong person" in str(calls[-1][-1].parts[0].content)  # type: ignore[union-attr]


def test_other_agents_tool_is_refused_and_recorded(sqlite_url: str) -> None:
    ran: list[str] = []

    @tool(risk="send")
    def wire_money(amount: int) -> str:
        ran.append("wire")
        return "wired"

    @tool
    def search(q: str) -> str:
        return "results"

    calls: list[list[ModelMessage]] = []
    greedy = scripted([("wire_money", {"amount": 10**6}), "ok"], calls)
    banker = Agent("banker", scripted(["n/a"], []), tools=[wire_money])
    researcher = Agent("researcher", greedy, tools=[search])
    app = tether.App(sqlite_url, policy=Policy({"read": "auto", "send": "auto"}))
    app.register(tether.Sequential("both", [researcher, banker]))
    info = app.run("both", {})

    assert info.status == "succeeded", info.error
    assert ran == []  # never run, even though the policy would allow it
    violation = next(s for s in info.steps if s.name == "researcher.scope_violation")
    assert violation.output["tool"] == "wire_money" and violation.output["owner"] == "banker"
    answer = calls[1][-1].parts[0]
    assert "belongs to agent 'banker'" in str(answer.content)  # type: ignore[union-attr]


def test_invalid_arguments_and_unknown_tools_are_bounded(sqlite_url: str) -> None:
    @tool
    def lookup(name: str, limit: int = 3) -> str:
        return name

    calls: list[list[ModelMessage]] = []
    model = scripted([("lookup", {"limit": "many"}), ("nope", {}), ("lookup", {"x": 1}),
                      ("lookup", {"name": 5})], calls)
    app = tether.App(sqlite_url)
    app.register(Agent("researcher", model, tools=[lookup], tool_retries=3))
    info = app.run("researcher", {})
    assert info.status == "failed"
    assert info.error is not None and info.error["type"] == "ToolErrors"
    assert "'researcher'" in info.error["message"]
    assert len(calls) == 4
    feedback = str(calls[1][-1].parts[0].content)  # type: ignore[union-attr]
    assert "name" in feedback and "Field required" in feedback


def test_invalid_output_is_reasked_then_fails_naming_the_node(sqlite_url: str) -> None:
    calls: list[list[ModelMessage]] = []
    model = scripted([final(name="Acme", employees="lots")], calls)
    app = tether.App(sqlite_url)
    app.register(Agent("profiler", model, output_type=Profile, output_retries=2))
    info = app.run("profiler", {})
    assert info.status == "failed"
    assert len(calls) == 3  # the first answer and two re-asks
    assert [s.name for s in info.steps] == ["profiler.model"] * 3
    assert info.usage.llm_calls == 3  # every re-ask is charged
    assert info.error is not None and info.error["type"] == "OutputInvalid"
    assert "'profiler'" in info.error["message"] and "employees" in info.error["message"]
    with pytest.raises(tether.RunFailed, match="profiler"):
        tether.RunHandle(app, info.id).result(timeout=1)


def test_invalid_output_recovers_on_reask(sqlite_url: str) -> None:
    calls: list[list[ModelMessage]] = []
    model = scripted([final(name="Acme"), final(name="Acme", employees=7)], calls)
    app = tether.App(sqlite_url)
    app.register(Agent("profiler", model, output_type=Profile))
    info = app.run("profiler", {})
    assert info.output == {"name": "Acme", "employees": 7}
    assert "employees" in str(calls[1][-1].parts[0].content)  # type: ignore[union-attr]


def test_checks_reask_with_the_failed_check(sqlite_url: str) -> None:
    def mentions_acme(text: str, state: Any) -> bool | str:
        return "Acme" in text or "the email must name the company Acme"

    calls: list[list[ModelMessage]] = []
    model = scripted(["Hello there", "Hello Acme"], calls)
    app = tether.App(sqlite_url)
    app.register(Agent("drafter", model, checks=[mentions_acme]))
    info = app.run("drafter", {})
    assert info.output == "Hello Acme"
    assert "must name the company Acme" in str(calls[1][-1].parts[0].content)  # type: ignore[union-attr]


def test_tool_retries_keep_the_idempotency_key_and_failures_reach_the_model(
    sqlite_url: str,
) -> None:
    keys: list[str] = []

    @tool(risk="write", retries=1)
    def flaky(ctx: ToolContext, n: int) -> str:
        keys.append(ctx.idempotency_key)
        if len(keys) == 1:
            raise ConnectionError("upstream hiccup")
        return "ok"

    @tool
    def broken(n: int) -> str:
        raise ValueError("no such record")

    calls: list[list[ModelMessage]] = []
    model = scripted([("flaky", {"n": 1}), ("broken", {"n": 2}), "finished"], calls)
    app = tether.App(sqlite_url, policy=Policy({"write": "auto", "read": "auto"}))
    app.register(Agent("worker", model, tools=[flaky, broken]))
    info = app.run("worker", {})
    assert info.status == "succeeded", info.error
    assert len(keys) == 2 and keys[0] == keys[1]  # one step, two attempts, one key
    flaky_step = next(s for s in info.steps if s.name == "worker.tool.flaky")
    assert flaky_step.attempts == 2
    told = str(calls[2][-1].parts[0].content)  # type: ignore[union-attr]
    assert "tool broken failed" in told and "no such record" in told


def test_structured_output_given_as_json_text_is_accepted(sqlite_url: str) -> None:
    calls: list[list[ModelMessage]] = []
    model = scripted(['```json\n{"name": "Acme", "employees": 3}\n```'], calls)
    app = tether.App(sqlite_url)
    app.register(Agent("profiler", model, output_type=Profile))
    info = app.run("profiler", {})
    assert info.output == {"name": "Acme", "employees": 3}
    assert len(calls) == 1
