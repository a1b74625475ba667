"""The real provider path: pydantic-ai's OpenAIChatModel against the local fake server, with
each fault the server can inject mapped onto the step's retry policy."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pydantic
import pytest

import tether
from tests.fake_provider import FakeProvider
from tether import Agent, Retry, tool


class Company(pydantic.BaseModel):
    name: str
    employees: int


@tool
def lookup(name: str) -> dict[str, object]:
    """Find a company by name."""
    return {"name": name, "employees": 42}


FAST = Retry(max_attempts=3, initial_delay=0.05, max_delay=0.2)


@pytest.fixture
def server() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


def make_app(url: str, server: FakeProvider, *, retry: Retry = FAST,
             timeout: float = 10.0) -> tether.App:
    app = tether.App(url)
    app.register(Agent("researcher", server.model(), "Research the company.", tools=[lookup],
                       output_type=Company, retry=retry, timeout=timeout))
    return app


def test_tool_calls_usage_and_price_over_http(store_url: str, server: FakeProvider) -> None:
    app = make_app(store_url, server)
    try:
        info = app.run("researcher", {"company": "Acme"})
    finally:
        app.close()
    assert info.status == "succeeded", info.error
    assert [s.name for s in info.steps] == [
        "researcher.model", "researcher.tool.lookup", "researcher.model"]
    assert len(server.requests) == 2
    sent_tools = [t["function"]["name"] for t in server.requests[0]["tools"]]
    assert sent_tools == ["lookup", "final_result"]
    assert server.requests[1]["messages"][-1]["role"] == "tool"  # the result went back
    chat = info.steps[0]
    assert chat.usage.output_tokens == 12 and chat.usage.input_tokens > 0
    assert chat.usage.cost_usd > 0  # gpt-4.1-mini is priced by genai-prices
    assert chat.meta["gen_ai.provider.name"] == "openai"
    assert chat.meta["gen_ai.response.model"] == "gpt-4.1-mini"


def test_429_honours_retry_after(sqlite_url: str, server: FakeProvider) -> None:
    server.fail_next("429", retry_after=1)
    started = time.monotonic()
    info = make_app(sqlite_url, server).run("researcher", {})
    assert info.status == "succeeded", info.error
    assert time.monotonic() - started >= 1.0  # not the 50 ms backoff: the provider's wait
    assert info.steps[0].attempts == 2


def test_long_retry_after_becomes_a_durable_sleep(sqlite_url: str, server: FakeProvider) -> None:
    server.fail_next("429", retry_after=6)
    app = make_app(sqlite_url, server)
    info = app.run("researcher", {})
    assert info.status == "waiting"  # parked in the store, not sleeping in a worker
    assert info.wake_at is not None
    assert info.steps[0].status == "retrying" and info.steps[0].attempts == 1


@pytest.mark.parametrize("fault", ["500", "malformed", "disconnect"])
def test_transient_faults_are_retried(sqlite_url: str, server: FakeProvider, fault: str) -> None:
    server.fail_next(fault, times=2)
    info = make_app(sqlite_url, server).run("researcher", {})
    assert info.status == "succeeded", info.error
    assert info.steps[0].attempts == 3
    assert len(server.requests) == 4


def test_timeout_is_retried(sqlite_url: str, server: FakeProvider) -> None:
    server.fail_next("hang", seconds=5)
    info = make_app(sqlite_url, server, timeout=0.5).run("researcher", {})
    assert info.status == "succeeded", info.error
    assert info.steps[0].attempts == 2


def test_400_fails_at_once_with_the_providers_message(sqlite_url: str,
                                                      server: FakeProvider) -> None:
    server.fail_next("400", message="model 'gpt-4.1-mini' does not support temperature 7")
    info = make_app(sqlite_url, server).run("researcher", {})
    assert info.status == "failed"
    assert len(server.requests) == 1  # no retry
    assert info.steps[0].attempts == 1
    assert info.error is not None
    assert "does not support temperature 7" in info.error["message"]
    assert "'researcher'" in info.error["message"]


def test_retries_exhausted_fail_the_node(sqlite_url: str, server: FakeProvider) -> None:
    server.fail_next("500", times=5)
    info = make_app(sqlite_url, server).run("researcher", {})
    assert info.status == "failed"
    assert len(server.requests) == 3
    assert info.error is not None and "node 'researcher'" in info.error["message"]


def test_unreachable_provider_is_retried_then_fails(sqlite_url: str) -> None:
    server = FakeProvider()  # never started: connection refused
    server.port = 9
    info = make_app(sqlite_url, server).run("researcher", {})
    assert info.status == "failed"
    assert info.steps[0].attempts == 3
    assert info.error is not None and "researcher" in info.error["message"]


def test_a_failed_model_step_names_its_model_like_a_completed_one(
        sqlite_url: str, server: FakeProvider) -> None:
    """Stats, cost, /metrics and change detection group by `gen_ai.request.model`: a call that
    failed for good must land in its model's group, not in a `openai:gpt-4.1-mini` group of
    its own that reads as another model with a 100 % failure rate."""
    import asyncio

    from tether.observe import stats_report

    app = make_app(sqlite_url, server)
    try:
        ok = app.run("researcher", {})
        server.fail_next("500", times=5)
        failed = app.run("researcher", {})
        rows = asyncio.run(stats_report(app, "model"))
    finally:
        app.close()
    assert ok.status == "succeeded" and failed.status == "failed"
    completed, lost = ok.steps[0], failed.steps[0]
    assert lost.status == "failed"
    for key in ("gen_ai.request.model", "gen_ai.provider.name"):
        assert lost.meta.get(key) == completed.meta.get(key), key
    models = {r.group["model"]: r for r in rows}
    assert set(models) == {"gpt-4.1-mini", None}  # None: the tool step
    assert models["gpt-4.1-mini"].failures == 1
