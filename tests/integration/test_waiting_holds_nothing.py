"""README / docs/concepts.md: a run waiting for a signal "holds no worker, no coroutine and no
memory". Attacked in a live worker: once many runs are waiting, no workflow coroutine, no
`Context` and no task of theirs is left in the process, the worker is free to take new runs,
and the memory Python holds does not grow with the number of waiting runs."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import tracemalloc
from collections.abc import AsyncIterator
from datetime import timedelta
from types import CoroutineType
from typing import Any

import pytest

import tether
from tether.engine.context import Context

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def worker(app: tether.App, concurrency: int) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(app.run_worker_async(concurrency=concurrency, stop=stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def all_waiting(app: tether.App, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(await app.list_runs_async(status="waiting", limit=count + 1)) < count:
        assert time.monotonic() < deadline, f"timed out waiting for {count} runs to wait"
        await asyncio.sleep(0.02)


def held_by_the_process(code: Any, run_ids: set[str]) -> tuple[int, int]:
    """(live coroutines running `code`, live engine Contexts of `run_ids`) after a full
    collection. Only this test's runs count: earlier tests in the process may leave theirs."""
    gc.collect()
    objects = gc.get_objects()
    coroutines = sum(1 for o in objects if isinstance(o, CoroutineType) and o.cr_code is code)
    contexts = sum(1 for o in objects if isinstance(o, Context) and o.run_id in run_ids)
    return coroutines, contexts


def contexts_alive() -> list[Context]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, Context)]


async def test_waiting_runs_hold_no_coroutine_no_context_and_no_memory(store_url: str) -> None:
    app = tether.App(store_url)

    @app.step
    async def note(who: str) -> str:
        return f"hello {who}"

    @app.workflow
    async def approval(ctx: tether.Context, who: str) -> dict[str, Any]:
        greeting = await note(who)
        decision = await ctx.wait_for_signal("approve", timeout=timedelta(days=3))
        return {"greeting": greeting, "decision": decision}

    definition = app.get_workflow("approval")
    assert definition is not None
    code = definition.fn.__code__
    concurrency = 20
    async with worker(app, concurrency):
        first = [(await app.start_async("approval", {"who": f"a{i}"})).id for i in range(50)]
        await all_waiting(app, 50)
        tracemalloc.start()
        try:
            gc.collect()
            before, _ = tracemalloc.get_traced_memory()
            # Ten times more waiting runs than the worker has slots: each one went through it.
            more = [(await app.start_async("approval", {"who": f"b{i}"})).id for i in range(250)]
            await all_waiting(app, 300)
            gc.collect()
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # The database says `waiting` a moment before the worker has let go of the last run
        # (its suspend committed, the answer not yet back): wait for the worker to settle.
        ids = set(first + more)
        deadline = time.monotonic() + 10
        while app.live_contexts or {t.get_name() for t in asyncio.all_tasks()} & ids:
            assert time.monotonic() < deadline, (
                f"waiting runs still held by the worker: {sorted(app.live_contexts)[:5]}, "
                f"tasks {sorted({t.get_name() for t in asyncio.all_tasks()} & ids)[:5]}"
            )
            await asyncio.sleep(0.01)
        coroutines, contexts = held_by_the_process(code, ids)
        assert coroutines == 0, f"{coroutines} workflow coroutines alive for waiting runs"
        assert contexts == 0, f"{contexts} engine Contexts alive for waiting runs"
        # Python allocations of this process grew by less than a kilobyte per waiting run (a
        # parked coroutine with its Context, journal and frames costs several).
        per_run = (after - before) / len(more)
        assert per_run < 1024, f"{per_run:.0f} bytes held per waiting run"

        # Not holding a worker slot either: all 300 runs resume and finish on 20 slots.
        for run_id in first + more:
            await app.signal_async(run_id, "approve", {"ok": True})
        deadline = time.monotonic() + 60
        while len(await app.list_runs_async(status="succeeded", limit=301)) < 300:
            assert time.monotonic() < deadline, "the signalled runs did not all finish"
            await asyncio.sleep(0.05)
    await app.store.close()


async def test_an_idle_worker_holds_no_context_of_a_run_that_suspended(store_url: str) -> None:
    app = tether.App(store_url, lease_seconds=0.3)  # a heartbeat every 0.1 s
    released = asyncio.Event()

    @app.step
    async def hold() -> str:
        await released.wait()
        return "done"

    @app.workflow
    async def parked(ctx: tether.Context) -> Any:
        await hold()
        return await ctx.wait_for_signal("go", timeout=timedelta(days=3))

    async with worker(app, 4):
        run_id = (await app.start_async("parked", {})).id
        # Wait until a heartbeat has renewed the lease while the run is inside its step.
        deadline = time.monotonic() + 20
        first_expiry = None
        while True:
            info = await app.get_run_async(run_id)
            if info.status == "running" and info.lease_expires is not None:
                if first_expiry is None:
                    first_expiry = info.lease_expires
                elif info.lease_expires > first_expiry:
                    break
            assert time.monotonic() < deadline, "no heartbeat renewed the run's lease"
            await asyncio.sleep(0.02)
        released.set()
        await all_waiting(app, 1)
        deadline = time.monotonic() + 10
        while app.live_contexts:
            assert time.monotonic() < deadline, "the worker did not let go of the run"
            await asyncio.sleep(0.01)
        # Cancelled timers the run left in the event loop refer to it until they fall due
        # (a few seconds); what is still held after that is held for good.
        deadline = time.monotonic() + 5
        while alive := contexts_alive():
            assert time.monotonic() < deadline, (
                f"an idle worker still holds the Context of {alive[0].run_id} ({alive[0]._store.url})"
            )
            await asyncio.sleep(0.1)
    await app.store.close()
