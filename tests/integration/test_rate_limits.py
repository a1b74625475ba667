"""Provider rate limits (`app.rate_limit`) on both stores: agent runs on two workers against a
fake provider that answers 429 above its rate; the limit keeps every request under it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import pytest

import tether
from tests.fake_provider import FakeProvider
from tests.integration.test_engine_runs import worker
from tether import Agent, Retry
from tether.engine.ratelimits import RATE_WAIT
from tether.observe.stats import stats_report
from tether.store.ratelimits_sql import decide

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        fake.rate_limit = (4, 2.0)  # the provider: 4 requests in any 2 s, then 429
        yield fake


def make_app(url: str, server: FakeProvider) -> tether.App:
    app = tether.App(url)
    # Ours is stricter than the provider's window: what the test checks is that nothing
    # goes over it, not how close to the edge the limit runs (that is bench/ material).
    app.rate_limit("openai:*", requests=4, per=timedelta(seconds=3))
    app.register(Agent("writer", server.model(), "Write one line.",
                       retry=Retry(max_attempts=1)))
    return app


async def test_agents_on_two_workers_never_get_a_429(store_url: str, server: FakeProvider) -> None:
    apps = [make_app(store_url, server), make_app(store_url, server)]
    handles = [await apps[0].start_async("writer", {"prompt": f"line {i}"}) for i in range(10)]
    async with AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(worker(app))
        infos = []
        for handle in handles:
            await handle.result_async(timeout=100)
            infos.append(await apps[0].get_run_async(handle.id))
    assert server.rate_limited == 0  # counted at the server
    assert len(server.requests) == 10
    # The requests past the first window waited for capacity, and their steps say so.
    assert sum(1 for i in infos for s in i.steps if (s.meta or {}).get(RATE_WAIT)) >= 6
    # `tether stats` shows the time spent waiting for capacity.
    (row,) = await stats_report(apps[0], "node")
    assert row.rate_wait_seconds > 0


def test_a_rate_limit_names_a_provider_or_a_model(sqlite_url: str) -> None:
    app = tether.App(sqlite_url)
    with pytest.raises(tether.UserError, match="provider:model"):
        app.rate_limit("gpt-4.1-mini", requests=10)
    with pytest.raises(tether.UserError, match="requests=, tokens="):
        app.rate_limit("openai:*")


def test_a_rate_limit_takes_a_finite_window_and_whole_counts(sqlite_url: str) -> None:
    app = tether.App(sqlite_url)
    # Each was accepted: NaN or an infinite window, a fractional or string count (a TypeError
    # at the first request), True for 1.
    bad_windows: list[dict[str, Any]] = [
        {"per": float("nan")}, {"per": float("inf")}, {"per": 0}, {"per": "60"}]
    for bad in bad_windows:
        with pytest.raises(tether.UserError, match="per must be a positive number of seconds"):
            app.rate_limit("openai:*", requests=10, **bad)
    counts: list[Any] = [1.5, "5", True, 0]
    for count in counts:
        with pytest.raises(tether.UserError, match="requests must be an integer of at least 1"):
            app.rate_limit("openai:*", requests=count)
    assert app.rate_limits == {}


def test_the_wait_is_until_the_oldest_grant_leaves_the_window() -> None:
    grants = [(100.0, 10), (101.0, 10), (102.0, 10)]
    assert decide(grants, 103.0, 3, None, 60.0, 0) == pytest.approx(57.0)
    assert decide(grants, 103.0, 4, None, 60.0, 0) == 0.0
    # Tokens: 30 used of 35, a request of 10 must wait for the first grant to leave.
    assert decide(grants, 103.0, None, 35, 60.0, 10) == pytest.approx(57.0)
    assert decide(grants, 103.0, None, 50, 60.0, 10) == 0.0
