"""The trust layer under a real `tether.Agent` (offline scripted model): a ``send`` tool in
``review`` suspends the run without running; an edited approval runs it once with the edit; a
rejection reaches the model as the tool's result; the request carries the agent's context."""

from __future__ import annotations

from typing import Any

import tether
from tests.integration.trust_workflows import close_apps  # noqa: F401 - fixture
from tether import Agent, ToolContext, tool
from tether.agents.offline import ScriptedModel, Turn, call


def mailer_app(url: str, sent: list[dict[str, Any]], seen: list[Turn]) -> tether.App:
    @tool(risk="read")
    def lookup(name: str) -> dict[str, str]:
        """Find the company's contact."""
        return {"name": name, "email": "ceo@acme.com"}

    @tool(risk="send")
    def send_email(ctx: ToolContext, to: str, subject: str, body: str) -> str:
        """Send an email."""
        sent.append({"key": ctx.idempotency_key, "to": to, "subject": subject, "body": body})
        return f"sent to {to}"

    def script(turn: Turn) -> Any:
        seen.append(turn)
        if turn.turn == 0:
            return call("lookup", name="Acme")
        if turn.turn == 1:
            return call("send_email", to="ceo@acme.com", subject="Hello", body="Draft one")
        return f"done after {len(turn.tool_results)} tool results"

    app = tether.App(url, policy=tether.Policy({"read": "auto", "send": "review"}))
    app.register(Agent("mailer", ScriptedModel(script), "Write to Acme.",
                       tools=[lookup, send_email]))
    return app


def test_review_suspends_and_an_edited_approval_sends_once(store_url: str) -> None:
    sent: list[dict[str, Any]] = []
    seen: list[Turn] = []
    app = mailer_app(store_url, sent, seen)

    info = app.run("mailer", {})
    assert info.status == "waiting"
    assert sent == []
    (approval,) = app.approvals()
    assert (approval.agent, approval.tool, approval.category) == ("mailer", "send_email", "send")
    assert approval.args == {"to": "ceo@acme.com", "subject": "Hello", "body": "Draft one"}
    # The reviewer sees the agent's journey: its model calls, the automatic lookup, versions.
    context = approval.context
    names = [s["name"] for s in context["steps"]]
    assert "mailer.model" in names and "mailer.tool.lookup" in names
    assert context["spend"]["llm_calls"] == 2
    (version,) = context["versions"]
    assert version["node"] == "mailer" and version["request_model"]
    assert version["prompt_hash"]
    assert context["node"]["name"] == "mailer" and context["node"]["elapsed"] is not None
    # The read tool was let through automatically and counts as evidence too.
    rows = {r.category: r for r in app.trust_report()}
    assert rows["read"].stats.auto == 1 and rows["read"].ring == "auto"

    app.approve(approval.id, reviewer="alice", edits={"body": "Edited by Alice"})
    info = app.run("mailer", {}, run_id=info.id)
    assert info.status == "succeeded", info.error
    assert [(m["to"], m["body"]) for m in sent] == [("ceo@acme.com", "Edited by Alice")]
    assert sent[0]["key"].startswith(info.id + ":")
    tool_step = next(s for s in info.steps if s.name == "mailer.tool.send_email")
    assert tool_step.input == {"to": "ceo@acme.com", "subject": "Hello", "body": "Edited by Alice"}
    rows = {r.category: r for r in app.trust_report()}
    assert (rows["send"].stats.reviews, rows["send"].stats.edited) == (1, 1)


def test_a_rejection_reaches_the_model_as_the_tool_result(store_url: str) -> None:
    sent: list[dict[str, Any]] = []
    seen: list[Turn] = []
    app = mailer_app(store_url, sent, seen)
    run = app.run("mailer", {})
    (approval,) = app.approvals()

    app.reject(approval.id, reviewer="bob", reason="Not before the contract is signed.")
    info = app.run("mailer", {}, run_id=run.id)

    assert info.status == "succeeded", info.error
    assert sent == []
    # The agents layer answers the model's call with the reason (as a tool error to revise on).
    told = " ".join(seen[-1].errors)
    assert "rejected by bob: Not before the contract is signed." in told
