"""The engine against real stores (SQLite files, and PostgreSQL when available), driven by
in-process workers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import tether
from tether.store.base import NewRun

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def worker(app: tether.App, concurrency: int = 20) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(app.run_worker_async(concurrency=concurrency, stop=stop, grace_period=2))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def lease_lapsed(store: Any, run_id: str) -> bool:
    """Whether the run's current lease has run out (its holder is as good as dead)."""
    run = await store.get_run(run_id)
    return run is not None and run.lease_expires is not None and time.time() > run.lease_expires


async def status_of(app: tether.App, run_id: str) -> str:
    return (await app.get_run_async(run_id)).status


def build(store_url: str, **kwargs: Any) -> tuple[tether.App, dict[str, int]]:
    app = tether.App(store_url, **kwargs)
    executed: dict[str, int] = {}

    @app.step
    async def fetch(who: str) -> str:
        key = tether.current_step().idempotency_key
        executed[key] = executed.get(key, 0) + 1
        return f"page:{who}"

    @app.workflow(name="hello", version="1")
    async def hello(ctx: tether.Context, who: str) -> dict[str, Any]:
        page = await fetch(who)
        decision = await ctx.wait_for_signal("approval")
        await ctx.sleep(0.05)
        return {"page": page, "decision": decision}

    return app, executed


async def test_the_design_example_end_to_end(store_url: str) -> None:
    app, executed = build(store_url)
    async with worker(app):
        handle = await app.start_async("hello", {"who": "acme"}, labels={"team": "sales"})
        await until(lambda: _is(app, handle.id, "waiting"))
        info = await app.get_run_async(handle.id)
        assert info.waiting_for == "approval" and info.lease_owner is None  # no worker held
        await app.signal_async(handle.id, "approval", {"approved": True})
        output = await handle.result_async(timeout=10)
    assert output == {"page": "page:acme", "decision": {"approved": True}}
    info = await app.get_run_async(handle.id)
    assert info.labels == {"team": "sales"}
    assert [s.kind for s in info.steps] == ["step", "signal", "sleep"]
    assert list(executed.values()) == [1]


async def _is(app: tether.App, run_id: str, status: str) -> bool:
    return await status_of(app, run_id) == status


async def test_start_with_a_run_id_is_idempotent(store_url: str) -> None:
    app, _ = build(store_url)
    first = await app.start_async("hello", {"who": "a"}, run_id="order-42")
    again = await app.start_async("hello", {"who": "b"}, run_id="order-42")
    assert first.id == again.id == "order-42"
    runs = await app.list_runs_async()
    assert len(runs) == 1 and runs[0].input == {"who": "a"}


async def test_an_empty_run_id_is_refused_not_replaced(store_url: str) -> None:
    # `--run-id ''` (an unset shell variable) made a run under a fresh id, silently: a second
    # start with the same empty id was then no longer idempotent.
    app, _ = build(store_url)
    for bad in ("", "  "):
        with pytest.raises(tether.UserError, match="a run id must be a non-empty string"):
            await app.start_async("hello", {"who": "a"}, run_id=bad)
    assert await app.list_runs_async() == []


async def test_a_signal_to_an_unknown_or_finished_run_is_an_error(store_url: str) -> None:
    app, _ = build(store_url)
    with pytest.raises(tether.UnknownRun, match="no run with id 'nope'"):
        await app.signal_async("nope", "approval")

    @app.workflow
    async def quick(ctx: tether.Context) -> int:
        return 1

    info = await app.run_async("quick")
    with pytest.raises(tether.UserError, match="already ended"):
        await app.signal_async(info.id, "approval")


async def test_cancel_a_waiting_run_and_a_running_one(store_url: str) -> None:
    app = tether.App(store_url)
    gate = asyncio.Event()
    ran: list[int] = []

    @app.step
    async def block() -> None:
        await gate.wait()

    @app.step
    async def after() -> None:
        ran.append(1)

    @app.workflow
    async def waits(ctx: tether.Context) -> None:
        await ctx.wait_for_signal("never")

    @app.workflow
    async def busy(ctx: tether.Context) -> None:
        await block()
        await after()

    async with worker(app):
        waiting = await app.start_async("waits")
        running = await app.start_async("busy")
        await until(lambda: _is(app, waiting.id, "waiting"))
        await until(lambda: _is(app, running.id, "running"))
        assert (await app.cancel_async(waiting.id, "no longer needed")).status == "cancelled"
        await app.cancel_async(running.id)
        gate.set()
        await until(lambda: _is(app, running.id, "cancelled"))
    assert ran == []  # stopped at the next step boundary
    with pytest.raises(tether.RunCancelled, match="no longer needed"):
        await waiting.result_async(timeout=1)


async def test_fork_reuses_the_journal_before_the_step(store_url: str) -> None:
    app = tether.App(store_url)
    calls: list[str] = []

    @app.step
    async def research(n: int) -> str:
        calls.append(f"research{n}")
        return f"r{n}"

    @app.workflow
    async def pipeline(ctx: tether.Context) -> list[str]:
        return [await research(1), await research(2), await research(3)]

    original = await app.run_async("pipeline")
    assert calls == ["research1", "research2", "research3"]
    fork = await app.fork_async(original.id, from_step=3)
    info = await app.run_async("pipeline", run_id=fork.id)
    assert info.status == "succeeded" and info.parent_id == original.id
    assert calls[3:] == ["research3"]  # steps 1 and 2 were not executed again


async def test_a_worker_runs_only_workflow_versions_it_has(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    old = tether.App(store_url)

    @old.workflow(name="report", version="1")
    async def report_v1(ctx: tether.Context) -> str:
        return "v1"

    new = tether.App(store_url)

    @new.workflow(name="report", version="2")
    async def report_v2(ctx: tether.Context) -> str:
        return "v2"

    pinned = await old.start_async("report")
    async with worker(new):
        fresh = await new.start_async("report")
        assert await fresh.result_async(timeout=10) == "v2"
        # The worker has looked at the pinned run and reported it instead of running it.
        await until(lambda: "will not be served" in caplog.text)
        info = await new.get_run_async(pinned.id)
        assert info.status == "queued" and info.version == "1"  # reported, not crashed
    assert "1 run(s) of report v1 (1 queued) will not be served" in caplog.text
    assert f"`tether fork {pinned.id} --version 2`" in caplog.text
    async with worker(old):
        assert await pinned.result_async(timeout=10) == "v1"


async def test_a_client_without_the_workflow_starts_it_by_name(store_url: str) -> None:
    server = tether.App(store_url)

    @server.workflow(name="greet", version="3")
    async def greet(ctx: tether.Context, who: str) -> str:
        return f"hi {who}"

    client = tether.App(store_url)
    handle = await client.start_async("greet", {"who": "ana"})
    async with worker(server):
        assert await handle.result_async(timeout=10) == "hi ana"
    assert (await client.get_run_async(handle.id)).version == "3"


async def test_a_zombie_worker_cannot_write_after_takeover(store_url: str) -> None:
    app, _ = build(store_url, lease_seconds=0.3)
    store = app.store
    await store.create_run(NewRun(id="z1", workflow="hello", version="1", input={"who": "x"}))
    zombie = (await store.claim_runs("zombie", [("hello", "1")], limit=1, lease_seconds=0.3))[0]
    await until(lambda: lease_lapsed(store, "z1"))  # the zombie pauses past its lease
    taker = (await store.claim_runs("taker", [("hello", "1")], limit=1, lease_seconds=10))[0]
    assert taker.recovered and taker.token > zombie.token
    from tether.store.base import StepRecord

    assert not await store.write_step("z1", zombie.token, StepRecord("z1", 1, "fetch", "step", "completed"))
    assert not await store.finish_run("z1", zombie.token, status="succeeded")
    assert await store.write_step("z1", taker.token, StepRecord("z1", 1, "fetch", "step", "completed"))
    assert (await store.get_run("z1")).recoveries == 1  # type: ignore[union-attr]


async def test_a_run_taken_over_too_often_fails_as_poison(store_url: str) -> None:
    app, _ = build(store_url, lease_seconds=0.2, max_recoveries=2)
    await app.store.create_run(NewRun(id="p1", workflow="hello", version="1", input={"who": "x"}))
    for n in range(3):  # three workers die holding it
        assert await app.store.claim_runs(f"dead{n}", [("hello", "1")], limit=1, lease_seconds=0.2)
        await until(lambda: lease_lapsed(app.store, "p1"))
    async with worker(app):
        await until(lambda: _is(app, "p1", "failed"))
    info = await app.get_run_async("p1")
    assert info.error and info.error["type"] == "PoisonRun"
    assert "max_recoveries=2" in info.error["message"]


async def test_a_durable_sleep_releases_the_worker_and_wakes_on_time(store_url: str) -> None:
    app = tether.App(store_url)

    @app.workflow
    async def nap(ctx: tether.Context) -> float:
        start = ctx.now()
        await ctx.sleep(0.3)
        return (ctx.now() - start).total_seconds()

    async with worker(app):
        handle = await app.start_async("nap")
        await until(lambda: _is(app, handle.id, "waiting"))
        assert (await app.get_run_async(handle.id)).lease_owner is None
        slept = await handle.result_async(timeout=10)
    assert slept >= 0.3  # never early; how promptly it wakes is measured in bench/


async def test_many_concurrent_runs_each_step_once(store_url: str) -> None:
    app = tether.App(store_url)
    seen: dict[str, int] = {}

    @app.step
    async def work(i: int) -> int:
        key = tether.current_step().idempotency_key
        seen[key] = seen.get(key, 0) + 1
        await asyncio.sleep(0.001)
        return i

    @app.workflow
    async def job(ctx: tether.Context, n: int) -> int:
        total = 0
        for i in range(n):
            total += await work(i)
        return total

    async with worker(app, concurrency=50):
        handles = [await app.start_async("job", {"n": 5}) for _ in range(100)]
        results = [await h.result_async(timeout=30) for h in handles]
    assert results == [10] * 100
    assert len(seen) == 500 and set(seen.values()) == {1}


async def test_prune_deletes_only_old_finished_runs(store_url: str) -> None:
    app = tether.App(store_url)

    @app.workflow
    async def done(ctx: tether.Context) -> int:
        return await ctx.step(lambda: 1)

    @app.workflow
    async def waits(ctx: tether.Context) -> None:
        await ctx.wait_for_signal("x")

    finished = await app.run_async("done")
    waiting = await app.run_async("waits")
    assert await app.prune_async(3600) == 0  # nothing is an hour old
    assert await app.prune_async(0) == 1
    with pytest.raises(tether.UnknownRun):
        await app.get_run_async(finished.id)
    assert (await app.get_run_async(waiting.id)).status == "waiting"


async def test_a_budget_can_suspend_and_be_raised(store_url: str) -> None:
    app = tether.App(store_url)

    @app.step
    async def tick(i: int) -> int:
        return i

    @app.workflow
    async def counter(ctx: tether.Context) -> int:
        for i in range(6):
            await tick(i)
        return 6

    info = await app.run_async("counter", budget=tether.Budget(max_steps=3, on_exceed="suspend"))
    assert info.status == "waiting" and info.waiting_for == "tether.budget"
    with pytest.raises(tether.UserError, match="raise_budget"):
        await app.signal_async(info.id, "tether.budget", {"max_steps": 10})
    await app.raise_budget_async(info.id, tether.Budget(max_steps=10))
    info = await app.run_async("counter", run_id=info.id)
    assert info.status == "succeeded" and len(info.steps) == 6


async def test_a_worker_whose_run_was_taken_over_stops_at_its_next_write(store_url: str) -> None:
    app = tether.App(store_url)
    entered, resume = asyncio.Event(), asyncio.Event()
    effects: list[str] = []

    @app.step
    async def slow() -> str:
        entered.set()
        await resume.wait()  # the worker pauses here (GC, partition) while it is taken over
        return "a"

    @app.step
    async def send() -> str:
        effects.append("sent")
        return "b"

    @app.workflow
    async def two(ctx: tether.Context) -> str:
        await slow()
        await send()
        return "done"

    paused = asyncio.create_task(app.run_async("two", run_id="taken"))
    await asyncio.wait_for(entered.wait(), 10)
    store = app.store
    held = await store.get_run("taken")
    assert held is not None and held.status == "running"
    # Another worker takes the run over (as after the paused holder's lease ran out).
    assert await store.release_run("taken", held.fencing)
    [taker] = await store.claim_runs("taker", [("two", "1")], limit=1, lease_seconds=30)
    resume.set()
    await asyncio.wait_for(paused, 10)

    assert effects == []  # the zombie stopped at its fenced write: no step after it ran
    assert await store.load_steps("taken") == []
    run = await store.get_run("taken")
    assert run is not None
    assert (run.status, run.lease_owner, run.fencing) == ("running", "taker", taker.token)
