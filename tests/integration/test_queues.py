"""Named queues (`app.queue`, `app.start(..., queue=, key=)`) on both stores: the per-key and
global limits hold across two workers, and runs waiting for capacity say so."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

import pytest

import tether
from tests.integration.test_engine_runs import until, worker

pytestmark = pytest.mark.timeout(90)


class Probe:
    """What is running inside the steps right now, by key, and the most ever seen."""

    def __init__(self) -> None:
        self.now: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.most_total = 0
        self.release = asyncio.Event()


def build(store_url: str, probe: Probe) -> tether.App:
    app = tether.App(store_url)
    app.queue("tenants", concurrency=3, per_key=2)

    @app.step
    async def work(key: str) -> str:
        probe.now[key] += 1
        probe.most[key] = max(probe.most[key], probe.now[key])
        probe.most_total = max(probe.most_total, sum(probe.now.values()))
        try:
            await probe.release.wait()
        finally:
            probe.now[key] -= 1
        return key

    @app.workflow
    async def job(ctx: tether.Context, key: str) -> str:
        return await work(key)

    return app


async def test_per_key_and_global_limits_hold_across_two_workers(store_url: str) -> None:
    probe = Probe()
    apps = [build(store_url, probe), build(store_url, probe)]
    client = apps[0]
    handles = [await client.start_async("job", {"key": "acme"}, queue="tenants", key="acme")
               for _ in range(6)]
    handles += [await client.start_async("job", {"key": "beta"}, queue="tenants",
                                         labels={"tenant": "beta"}) for _ in range(2)]
    async with AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(worker(app))
        await until(lambda: sum(probe.now.values()) == 3, timeout=30)
        runs = [await client.get_run_async(h.id) for h in handles]
        queued = [r for r in runs if r.status == "queued"]
        assert len(queued) == 5
        assert any(r.waiting_for == "capacity in queue 'tenants', key 'acme'" for r in queued)
        probe.release.set()
        results = [await h.result_async(timeout=60) for h in handles]
    assert sorted(results) == ["acme"] * 6 + ["beta"] * 2
    assert probe.most["acme"] == 2  # per_key: never 3 acme runs at once
    assert probe.most_total == 3  # concurrency
    # The key defaulted to the `tenant` label: both beta runs counted under "beta".
    assert probe.most["beta"] >= 1


async def test_starting_in_an_undeclared_queue_is_a_user_error(store_url: str) -> None:
    app = build(store_url, Probe())
    with pytest.raises(tether.UserError, match="queue 'nope' is not declared"):
        await app.start_async("job", {"key": "x"}, queue="nope")


def test_a_queue_refuses_limits_it_cannot_keep(sqlite_url: str) -> None:
    # Each was accepted (an infinite or NaN period, True as a count or a concurrency) or
    # raised a bare OverflowError / ValueError (rate=inf, a three-item rate).
    app = tether.App(sqlite_url)
    bad_rates: list[Any] = [(5, float("inf")), float("inf"), (5, float("nan")), (True, 5), (5, 1, 1),
                 (5, "x")]
    for rate in bad_rates:
        with pytest.raises(tether.UserError, match="rate must be starts per second"):
            app.queue("q", concurrency=2, rate=rate)
    with pytest.raises(tether.UserError, match="concurrency must be a positive integer"):
        app.queue("q", concurrency=True)
    assert app.queue("q", concurrency=2, rate=(3, 2)).record().rate_seconds == 2.0


async def test_a_priority_the_store_cannot_hold_is_a_user_error(store_url: str) -> None:
    # It was an OverflowError from SQLite (and a driver error from PostgreSQL's integer).
    app = build(store_url, Probe())
    for priority in (2**31, -(2**31), 10**30):
        with pytest.raises(tether.UserError, match="must be an integer between -2147483647"):
            await app.start_async("job", {"key": "x"}, queue="tenants", priority=priority)
    assert await app.list_runs_async() == []


