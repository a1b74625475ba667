"""Cancel interrupts a running step; ``max_duration`` fires during waits, sleeps and long steps
— on both stores, with in-process workers (the cross-process cancel is in
tests/e2e/test_cancel_process.py)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import tether
from tests.integration.test_engine_runs import until, worker

pytestmark = pytest.mark.timeout(60)


async def status(app: tether.App, run_id: str) -> str:
    return (await app.get_run_async(run_id)).status


async def test_cancel_interrupts_a_running_async_step(store_url: str) -> None:
    app = tether.App(store_url)
    marks: list[str] = []

    @app.step
    async def long_step() -> str:
        marks.append("started")
        try:
            await asyncio.sleep(60)
            marks.append("completed")
            return "done"
        finally:
            marks.append("cleanup")

    @app.workflow
    async def busy(ctx: tether.Context) -> str:
        return await long_step()

    async with worker(app):
        handle = await app.start_async("busy")
        await until(lambda: "started" in marks)
        await app.cancel_async(handle.id)
        # Far below the step's 60 s: only an interrupted step gets here in time.
        await until(lambda: _is(app, handle.id, "cancelled"), timeout=15)
    assert marks == ["started", "cleanup"]
    info = await app.get_run_async(handle.id)
    assert info.error and info.error["type"] == "RunCancelled"
    assert info.steps == []  # the interrupted step is not journaled; the error names it
    assert info.error["interrupted"] == [{"seq": 1, "name": "long_step", "kind": "step"}]


async def test_cancel_abandons_a_thread_step_and_discards_its_late_result(
    store_url: str,
) -> None:
    app = tether.App(store_url)
    release = threading.Event()
    started = threading.Event()
    returned = threading.Event()

    @app.step
    def blocking_step() -> str:  # a `def` step runs in a thread and cannot be interrupted
        started.set()
        release.wait(60)
        returned.set()
        return "late"

    @app.workflow
    async def busy(ctx: tether.Context) -> str:
        return await blocking_step()

    async with worker(app):
        handle = await app.start_async("busy")
        await until(started.is_set)
        await app.cancel_async(handle.id)
        await until(lambda: _is(app, handle.id, "cancelled"), timeout=15)
        assert not returned.is_set()  # cancelled while the thread still ran
        release.set()
        await until(returned.is_set)
        await asyncio.sleep(0)  # let a (wrong) late journal write be scheduled
    info = await app.get_run_async(handle.id)
    assert info.status == "cancelled"
    assert info.steps == []
    assert info.output is None


async def _is(app: tether.App, run_id: str, wanted: str) -> bool:
    return await status(app, run_id) == wanted


def budget_app(store_url: str) -> tether.App:
    app = tether.App(store_url)

    @app.workflow
    async def waits(ctx: tether.Context) -> Any:
        return await ctx.wait_for_signal("approval", timeout=3600)

    @app.workflow
    async def sleeps(ctx: tether.Context) -> str:
        await ctx.sleep(3600)
        return "woke"

    @app.step
    async def long_step() -> str:
        await asyncio.sleep(60)
        return "done"

    @app.workflow
    async def works(ctx: tether.Context) -> str:
        return await long_step()

    return app


@pytest.mark.parametrize("workflow", ["waits", "sleeps", "works"])
async def test_max_duration_fails_a_run_that_waits_sleeps_or_works_past_it(
    store_url: str, workflow: str
) -> None:
    app = budget_app(store_url)
    async with worker(app):
        handle = await app.start_async(workflow, budget=tether.Budget(max_duration=1.0))
        # Far below the hour-long wait/sleep and the 60 s step.
        await until(lambda: _is(app, handle.id, "failed"), timeout=20)
    info = await app.get_run_async(handle.id)
    assert info.error and info.error["type"] == "BudgetExceeded"
    assert "max_duration" in info.error["message"]


async def test_max_duration_with_on_exceed_suspend_parks_a_waiting_run(store_url: str) -> None:
    app = budget_app(store_url)
    async with worker(app):
        handle = await app.start_async(
            "waits", budget=tether.Budget(max_duration=1.0, on_exceed="suspend")
        )
        await until(
            lambda: _waits_for(app, handle.id, "tether.budget"), timeout=20
        )
        await app.signal_async(handle.id, "approval", "yes")
        await app.raise_budget_async(handle.id, tether.Budget(max_duration=3600))
        assert await handle.result_async(timeout=20) == "yes"


async def _waits_for(app: tether.App, run_id: str, name: str) -> bool:
    run = await app.get_run_async(run_id)
    return run.status == "waiting" and run.waiting_for == name


async def test_max_duration_fails_a_run_in_a_durable_retry_backoff(store_url: str) -> None:
    app = tether.App(store_url)

    @app.step(retry=tether.Retry(max_attempts=5, initial_delay=3600, max_delay=3600))
    async def flaky() -> str:
        raise ConnectionError("provider down")

    @app.workflow
    async def retries(ctx: tether.Context) -> str:
        return await flaky()

    async with worker(app):
        handle = await app.start_async("retries", budget=tether.Budget(max_duration=1.0))
        # The first retry is an hour away (a durable sleep); the budget runs out in a second.
        await until(lambda: _is(app, handle.id, "failed"), timeout=20)
    info = await app.get_run_async(handle.id)
    assert info.error and info.error["type"] == "BudgetExceeded"



async def test_a_cancel_from_another_client_interrupts_app_run(store_url: str) -> None:
    # A 600 s lease: its heartbeat (every 200 s) cannot be what notices the cancel.
    app = tether.App(store_url, lease_seconds=600)
    other = tether.App(store_url)  # holds no live context: only the store carries the cancel
    started = asyncio.Event()

    @app.step
    async def long_step() -> str:
        started.set()
        await asyncio.sleep(60)
        return "done"

    @app.workflow
    async def busy(ctx: tether.Context) -> str:
        return await long_step()

    running = asyncio.create_task(app.run_async("busy", run_id="script-run"))
    await asyncio.wait_for(started.wait(), 20)
    await other.cancel_async("script-run")
    info = await asyncio.wait_for(running, 15)  # far below the 60 s step
    assert info.status == "cancelled"
    assert info.steps == []
