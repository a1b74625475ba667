"""Tools: schema from the signature, validation, the hidden ToolContext; state templates."""

from __future__ import annotations

from typing import Literal

import pydantic
import pytest

from tether import ToolContext, UserError, tool
from tether.agents import Agent, RunState
from tether.agents.state import render


@tool(risk="send")
async def send_email(ctx: ToolContext, to: str, subject: str, priority: Literal["low", "high"] = "low") -> str:
    """Send an email to a customer.

    Longer explanation the model does not need."""
    return ctx.idempotency_key


def test_schema_comes_from_the_signature_without_the_context() -> None:
    assert send_email.name == "send_email" and send_email.risk == "send"
    assert send_email.description == "Send an email to a customer."
    assert send_email.takes_context
    schema = send_email.schema
    assert set(schema["properties"]) == {"to", "subject", "priority"}
    assert schema["required"] == ["to", "subject"]
    assert schema["properties"]["priority"]["enum"] == ["low", "high"]


def test_arguments_are_validated() -> None:
    assert send_email.validate({"to": "a", "subject": "b"}) == {
        "to": "a", "subject": "b", "priority": "low"}
    with pytest.raises(pydantic.ValidationError):
        send_email.validate({"to": "a"})
    with pytest.raises(pydantic.ValidationError):
        send_email.validate({"to": "a", "subject": "b", "cc": "sneaky"})  # unknown argument
    with pytest.raises(pydantic.ValidationError):
        send_email.validate({"to": "a", "subject": "b", "priority": "urgent"})


def test_plain_functions_and_bad_signatures() -> None:
    def lookup(name: str, limit: int = 3) -> list[str]:
        return []

    agent = Agent("a", "test", tools=[lookup])
    assert agent.tools[0].risk == "read" and agent.tools[0].schema["required"] == ["name"]

    def splat(*names: str) -> None: ...

    with pytest.raises(UserError, match="splat"):
        tool(splat)
    with pytest.raises(UserError, match="twice or reserved"):
        Agent("a", "test", tools=[lookup, lookup])
    with pytest.raises(UserError, match="name"):
        Agent("bad name!", "test")


def test_templates_fill_from_input_and_earlier_outputs() -> None:
    state = RunState(input={"company": "Acme", "n": 3},
                     outputs={"researcher": {"industry": "robotics", "tags": ["a", "b"]}})
    text = render("{company} / {input.n} / {researcher.industry} / {researcher.tags.1} / "
                  '{researcher.tags} / {"json": true}', state, node="x", what="instructions")
    assert text == 'Acme / 3 / robotics / b / ["a", "b"] / {"json": true}'
    with pytest.raises(UserError, match=r"node 'x'.*\{planner\.queries\}.*known names"):
        render("{planner.queries}", state, node="x", what="instructions")
