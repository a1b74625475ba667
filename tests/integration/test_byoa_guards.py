"""tether's guards on plain pydantic-ai agents: `TetherDurability` plus the `TetherTrust`,
`TetherScope` and `TetherLoopGuard` capabilities, as a user adds them to an existing agent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pydantic
import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import tether
from tether.agents.capabilities import TetherLoopGuard, TetherScope, TetherTrust

_apps: list[tether.App] = []


@pytest.fixture(autouse=True)
def close_apps() -> Iterator[None]:
    yield
    while _apps:
        _apps.pop().close()


def new_app(url: str, **kwargs: Any) -> tether.App:
    app = tether.App(url, **kwargs)
    _apps.append(app)
    return app


def returns(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    return [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]


def mailer(app: tether.App, sent: list[dict[str, Any]], trust: bool = True) -> Agent[None, str]:
    """Asks to send one email (a requires_approval tool), then reports what came back."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        got = returns(messages)
        if not got:
            return ModelResponse(parts=[ToolCallPart(
                "send_email", {"to": "ceo@acme.com", "body": "Draft one"})])
        return ModelResponse(parts=[TextPart(f"tool said: {got[-1].content}")])

    agent = Agent(FunctionModel(respond), name="mailer",
                  capabilities=[tether.TetherDurability(app), *([TetherTrust()] if trust else [])])

    @agent.tool_plain(requires_approval=True)
    def send_email(to: str, body: str) -> str:
        """Send an email."""
        sent.append({"to": to, "body": body, "key": tether.current_step().idempotency_key})
        return f"sent to {to}"

    return agent


def test_requires_approval_suspends_and_an_edit_runs_once(store_url: str) -> None:
    sent: list[dict[str, Any]] = []
    app = new_app(store_url)
    app.register(mailer(app, sent))

    info = app.run("mailer", {"prompt": "write to acme"})
    assert info.status == "waiting" and sent == []
    (approval,) = app.approvals()
    assert (approval.agent, approval.tool) == ("mailer", "send_email")
    assert approval.args == {"to": "ceo@acme.com", "body": "Draft one"}
    assert any(s["name"] == "mailer__model.request" for s in approval.context["steps"])
    app.approve(approval.id, reviewer="lead", edits={"to": "ceo@acme.com", "body": "Edited"})
    info = app.run("mailer", run_id=info.id)
    assert info.status == "succeeded" and info.output == "tool said: sent to ceo@acme.com"
    assert [s["body"] for s in sent] == ["Edited"]
    tool_step = next(s for s in info.steps if ".call_tool:send_email" in s.name)
    assert sent[0]["key"] == f"{info.id}:{tool_step.seq}"


def test_a_tool_needing_approval_without_tether_trust_names_the_fix(store_url: str) -> None:
    # With TetherDurability alone nothing decides the call; pydantic-ai's own error advises a
    # DeferredToolRequests output type, which on tether would end the run undecided.
    sent: list[dict[str, Any]] = []
    app = new_app(store_url)
    app.register(mailer(app, sent, trust=False))
    info = app.run("mailer", {"prompt": "write to acme"})
    assert info.status == "failed" and sent == []
    assert info.error is not None and "add tether.TetherTrust" in info.error["message"]


def test_a_rejection_reaches_the_model_and_nothing_is_sent(store_url: str) -> None:
    sent: list[dict[str, Any]] = []
    app = new_app(store_url)
    app.register(mailer(app, sent))
    run = app.run("mailer", {"prompt": "write to acme"})
    (approval,) = app.approvals()
    app.reject(approval.id, reviewer="lead", reason="too pushy")
    info = app.run("mailer", run_id=run.id)
    assert info.status == "succeeded" and "too pushy" in info.output and sent == []


def test_policy_rings_gate_a_tools_risk_category(store_url: str) -> None:
    calls: list[str] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if not returns(messages):
            return ModelResponse(parts=[ToolCallPart("wipe", {"what": "db"})])
        return ModelResponse(parts=[TextPart(str(returns(messages)[-1].content))])

    app = new_app(store_url, policy=tether.Policy({"read": "auto", "destroy": "deny"}))
    agent = Agent(FunctionModel(respond), name="ops",
                  capabilities=[tether.TetherDurability(app),
                                TetherTrust(risks={"wipe": "destroy"})])

    @agent.tool_plain
    def wipe(what: str) -> str:
        calls.append(what)
        return "wiped"

    app.register(agent)
    info = app.run("ops", {"prompt": "clean up"})
    assert info.status == "succeeded" and calls == []
    assert info.output.startswith("not run (deny)")


class Verdict(pydantic.BaseModel):
    answer: str


def test_scope_refuses_out_of_domain_and_records_foreign_tools(store_url: str) -> None:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if not returns(messages):
            return ModelResponse(parts=[ToolCallPart("send_email", {"to": "x"})])
        return ModelResponse(parts=[TextPart("ok")])

    app = new_app(store_url)
    scope = tether.Scope(domain="billing questions",
                         allow=lambda data: "invoice" in data["prompt"] or "not billing")
    agent = Agent(FunctionModel(respond), name="billing",
                  capabilities=[tether.TetherDurability(app), TetherScope(scope)])

    @agent.tool_plain
    def invoice_total(number: str) -> float:
        return 12.5

    app.register(agent)
    refused = app.run("billing", {"prompt": "write me a poem"})
    assert refused.status == "refused" and "not billing" in (refused.error or {}).get("message", "")
    info = app.run("billing", {"prompt": "my invoice 7"})
    assert info.status == "succeeded"
    violations = [s for s in info.steps if s.name == "billing.scope_violation"]
    assert len(violations) == 1 and violations[0].input["tool"] == "send_email"


def test_loop_guard_stops_a_stuck_agent(store_url: str) -> None:
    ran: list[str] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("search", {"q": "same"})])

    app = new_app(store_url)
    agent = Agent(FunctionModel(respond), name="stuck",
                  capabilities=[tether.TetherDurability(app), TetherLoopGuard(limit=3)])

    @agent.tool_plain
    def search(q: str) -> str:
        ran.append(q)
        return "nothing"

    app.register(agent)
    info = app.run("stuck", {"prompt": "find it"})
    assert info.status == "failed" and info.error["type"] == "LoopGuardTripped"
    assert len(ran) == 2


def test_registering_a_pydantic_agent_needs_tether_durability(tmp_path: Any) -> None:
    app = new_app(f"sqlite:///{tmp_path / 'r.db'}")
    plain = Agent(FunctionModel(lambda m, i: ModelResponse(parts=[TextPart("hi")])), name="p")
    with pytest.raises(tether.UserError, match="TetherDurability"):
        app.register(plain)
    durable = Agent(FunctionModel(lambda m, i: ModelResponse(parts=[TextPart("hi")])),
                    name="d", capabilities=[tether.TetherDurability(app)])
    app.register(durable)
    info = app.run("d", {"prompt": "hello"})
    assert (info.status, info.output) == ("succeeded", "hi")
    assert [s.name for s in info.steps] == ["d__model.request"]
    # Outside a workflow the capability steps aside: a plain pydantic-ai run, nothing journaled.
    assert durable.run_sync("hello").output == "hi"


def test_a_deferred_tool_call_waits_for_its_result_as_a_signal(store_url: str) -> None:
    from pydantic_ai.exceptions import CallDeferred

    from tether.agents.capabilities import deferred_result_signal

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        got = returns(messages)
        if not got:
            return ModelResponse(parts=[ToolCallPart("render", {"doc": "q3"}, tool_call_id="c1")])
        return ModelResponse(parts=[TextPart(f"rendered: {got[-1].content}")])

    app = new_app(store_url)
    agent = Agent(FunctionModel(respond), name="renderer",
                  capabilities=[tether.TetherDurability(app), TetherTrust()])

    @agent.tool_plain
    def render(doc: str) -> str:
        raise CallDeferred  # done by an outside system

    app.register(agent)
    info = app.run("renderer", {"prompt": "render q3"})
    assert info.status == "waiting"
    app.signal(info.id, deferred_result_signal("c1"), "q3.pdf")
    info = app.run("renderer", run_id=info.id)
    assert (info.status, info.output) == ("succeeded", "rendered: q3.pdf")
