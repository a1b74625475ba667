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
