"""A worker app whose agents are plain pydantic-ai agents made durable with `TetherDurability`.

Written as pydantic-ai's docs show (``Agent(model, name=…, output_type=…)``, ``@agent.tool``),
plus one capability. The model is pydantic-ai's real OpenAI chat model pointed at the billing
fake provider whose URL is in ``$BYOA_PROVIDER_URL``; every tool call appends a line to
``$BYOA_LOGS/tool_calls.jsonl``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pydantic
from openai import AsyncOpenAI
from pydantic_ai import Agent, RunContext
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

import tether

app = tether.App(lease_seconds=1.0)


class Answer(pydantic.BaseModel):
    summary: str
    sources: int


def _model() -> OpenAIChatModel:
    url = os.environ.get("BYOA_PROVIDER_URL", "http://127.0.0.1:9/v1")
    client = AsyncOpenAI(base_url=url, api_key="test-key", max_retries=0)
    return OpenAIChatModel("gpt-4.1-mini", provider=OpenAIProvider(openai_client=client))


support = Agent(
    _model(),
    name="support",
    instructions="Answer the customer's question; look things up first.",
    output_type=Answer,
    capabilities=[tether.TetherDurability(app)],
)


@support.tool
def lookup(ctx: RunContext[None], q: str) -> str:
    """Look a question up in the knowledge base."""
    key = tether.current_step().idempotency_key
    logs = Path(os.environ.get("BYOA_LOGS", "."))
    with open(logs / "tool_calls.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"q": q, "key": key, "pid": os.getpid()}) + "\n")
    time.sleep(0.05)
    return f"article about {q}"


app.register(support)


# A concierge: a function tool, an MCP server's tools (the real local test server, over stdio),
# a requires_approval tool and structured output — reviewed by tether's trust gate.
class Booking(pydantic.BaseModel):
    restaurant: str
    confirmed: bool


def _mcp_toolset() -> Any:
    from fastmcp.client.transports import PythonStdioTransport
    from pydantic_ai.mcp import MCPToolset

    server = Path(__file__).resolve().parents[1] / "mcp_server.py"
    log = Path(os.environ.get("BYOA_LOGS", ".")) / "mcp_calls.jsonl"
    return MCPToolset(PythonStdioTransport(server, args=["--log", str(log)]), id="restaurants")


concierge = Agent(
    _model(),
    name="concierge",
    instructions="Book dinner: check the weather, book, then tell the guest.",
    output_type=Booking,
    toolsets=[_mcp_toolset()],
    capabilities=[tether.TetherDurability(app), tether.TetherTrust()],
)


@concierge.tool_plain
def find_restaurant(city: str) -> str:
    """Find a restaurant in a city."""
    return "Chez L"


@concierge.tool_plain(requires_approval=True)
def notify_guest(message: str) -> str:
    """Send the guest a message (a human approves it first)."""
    logs = Path(os.environ.get("BYOA_LOGS", "."))
    key = tether.current_step().idempotency_key
    with open(logs / "notified.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"message": message, "key": key, "pid": os.getpid()}) + "\n")
    return "guest notified"


app.register(concierge)
