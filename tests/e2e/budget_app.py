"""The app of the budget and spend-limit tests: agents on pydantic-ai's real OpenAI model pointed
at the local fake provider ($BUDGET_PROVIDER_URL), priced with a friendly override so figures
are round: input tokens free, output $1000 per million tokens, so a call bounded by
``max_tokens=100`` reserves exactly $0.10 and, when the provider answers with 100 completion
tokens, costs exactly that.

Used in-process by the integration tests and as the worker app (``--app
tests.e2e.budget_app:app``) of the multi-process ones.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import tether
from tether import Agent, Parallel, tool
from tether.observe.cost import set_price_overrides
from tether.observe.limits import SpendLimit, set_spend_limits
from tether.store.base import Store

MAX_TOKENS = 100
CALL_USD = 0.10
"""What one call reserves and (answered with MAX_TOKENS completion tokens) costs."""
LIMIT_USD = float(os.environ.get("BUDGET_LIMIT_USD", "1.0"))
LEASE_SECONDS = float(os.environ.get("BUDGET_LEASE_SECONDS", "2.0"))
"""Short, so the kill tests see a dead worker's runs taken over soon."""


def model(url: str | None = None) -> Any:
    from openai import AsyncOpenAI
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    base = url or os.environ.get("BUDGET_PROVIDER_URL", "http://127.0.0.1:9/v1")
    client = AsyncOpenAI(base_url=base, api_key="test-key", max_retries=0)
    return OpenAIChatModel("gpt-4.1-mini", provider=OpenAIProvider(openai_client=client))


def completion_bound(request: dict[str, Any]) -> int:
    return int(request.get("max_completion_tokens") or request.get("max_tokens") or 0)


def answer_at_bound(request: dict[str, Any]) -> dict[str, Any]:
    """Answer in text, using exactly the request's completion bound."""
    return {"content": "done", "usage": {"completion_tokens": completion_bound(request)}}


@tool
def lookup(n: int) -> str:
    """Look something up."""
    return f"result {n}"


def tool_then_answer(calls: int) -> Any:
    """A responder: call `lookup` until `calls - 1` results are in, then answer; every
    response uses the whole completion bound."""

    def respond(request: dict[str, Any]) -> dict[str, Any]:
        done = sum(1 for m in request.get("messages", []) if m.get("role") == "tool")
        usage = {"completion_tokens": completion_bound(request)}
        if done < calls - 1:
            return {"tool_calls": [{"name": "lookup", "arguments": {"n": done}}], "usage": usage}
        return {"content": f"done after {done} lookups", "usage": usage}

    return respond


def make_app(store: str | Store | None = None, *, provider_url: str | None = None,
             limit_usd: float = LIMIT_USD, lease_seconds: float = LEASE_SECONDS) -> tether.App:
    app = tether.App(store, lease_seconds=lease_seconds)
    set_price_overrides(app, {"gpt-4.1-mini": {"input_per_mtok": 0.0, "output_per_mtok": 1000.0}})
    set_spend_limits(app, [SpendLimit("tenant", "acme", max_usd=limit_usd,
                                      window=timedelta(hours=1))])
    settings: Any = {"max_tokens": MAX_TOKENS}
    app.register(Agent("caller", model(provider_url), "Answer.", model_settings=settings))
    app.register(Agent("looper", model(provider_url), "Use lookup, then answer.",
                       tools=[lookup], model_settings=settings))
    app.register(Parallel("fanout", [
        Agent(f"branch{i}", model(provider_url), "Answer.", model_settings=settings)
        for i in range(4)]))
    return app


app = make_app()
