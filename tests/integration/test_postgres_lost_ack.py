"""docs/operations.md: "Every write is idempotent — re-applying it after a lost commit
acknowledgement changes nothing — so a retry is always safe."

Attacked head-on: every statement the PostgreSQL store sends is applied and committed, then
applied again, as the store's retry does when the connection drops after the commit and before
the answer arrives; the caller gets the second answer. A whole run — start, claim, steps, a
signal wait, a signal, a durable sleep, finish — must end exactly as without the fault.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

import tether
from tests.pg import postgres_schema_url
from tether.store.postgres import PostgresStore

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_schema_url() as url:
        yield url


def double_every_call(monkeypatch: pytest.MonkeyPatch, *, claims: bool) -> Counter[str]:
    """Every store call runs twice: committed, then retried (claims only if `claims`);
    returns the calls it doubled."""
    doubled: Counter[str] = Counter()
    original = PostgresStore._retrying  # pyright: ignore[reportPrivateUsage]

    async def lossy(
        self: PostgresStore, what: str, fn: Callable[..., Awaitable[Any]], state: Any, *args: Any
    ) -> Any:
        if what == "claim runs" and not claims:
            return await original(self, what, fn, state, *args)
        await original(self, what, fn, state, *args)  # committed; the answer is "lost"
        doubled[what] += 1
        return await original(self, what, fn, state, *args)

    monkeypatch.setattr(PostgresStore, "_retrying", lossy)
    return doubled


async def run_order(pg_url: str) -> tuple[tether.App, tether.RunInfo, Counter[int]]:
    """Start, claim, two steps around a signal wait, a durable sleep: the run must succeed."""
    app = tether.App(pg_url, lease_seconds=2.0)
    executions: Counter[int] = Counter()

    @app.step
    async def charge(amount: int) -> int:
        executions[amount] += 1
        return amount * 10

    @app.workflow
    async def order(ctx: tether.Context, amount: int) -> dict[str, Any]:
        first = await charge(amount)
        decision = await ctx.wait_for_signal("approve", timeout=timedelta(minutes=1))
        second = await charge(amount + 1)
        await ctx.sleep(timedelta(milliseconds=50))
        return {"first": first, "second": second, "decision": decision}

    stop = asyncio.Event()
    worker = asyncio.create_task(app.run_worker_async(concurrency=4, stop=stop))
    try:
        handle = await app.start_async("order", {"amount": 1})

        async def status() -> str:
            return (await app.get_run_async(handle.id)).status

        async def until(wanted: set[str], what: str) -> str:
            deadline = asyncio.get_running_loop().time() + 20
            while (current := await status()) not in wanted:
                assert asyncio.get_running_loop().time() < deadline, (
                    f"timed out waiting for {what}; the run is {current}: "
                    f"{await app.get_run_async(handle.id)}"
                )
                await asyncio.sleep(0.02)
            return current

        await until({"waiting", "failed"}, "the run to wait for its signal")
        await app.signal_async(handle.id, "approve", {"ok": True})
        assert await until({"succeeded", "failed", "cancelled"}, "the run to end") == "succeeded"
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(worker, 10)

    return app, await app.get_run_async(handle.id), executions


async def test_every_write_applied_twice_ends_the_run_as_without_the_fault(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    doubled = double_every_call(monkeypatch, claims=False)
    app, info, executions = await run_order(pg_url)
    assert info.output == {"first": 10, "second": 20, "decision": {"ok": True}}
    assert [(s.seq, s.kind, s.status) for s in info.steps] == [
        (1, "step", "completed"),
        (2, "signal", "completed"),
        (3, "step", "completed"),
        (4, "sleep", "completed"),
    ]
    assert info.recoveries == 0
    assert dict(executions) == {1: 1, 2: 1}, "a doubled write made a step run again"
    assert len(await app.store.list_signals(info.id)) == 1
    assert len(await app.list_runs_async()) == 1
    # The fault really was applied to the writes that matter.
    assert doubled["write"] >= 5, doubled
    await app.store.close()


async def test_a_claim_applied_twice_still_hands_the_run_to_the_worker(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker's claims say which runs it executes: a run leased to it by the first
    # application, which it does not execute, comes back with the second.
    double_every_call(monkeypatch, claims=True)
    app, info, executions = await run_order(pg_url)
    assert info.status == "succeeded"
    assert dict(executions) == {1: 1, 2: 1}
    assert info.recoveries == 0
    await app.store.close()
