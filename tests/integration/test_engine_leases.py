"""Leases in the engine, against real stores: renewals retried through store errors, fenced
step starts, and poison runs told by evidence (no progress), not by the number of takeovers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import tether
from tether.engine.lease import Leases
from tether.store import open_store
from tether.store.base import NewRun, StepRecord, Store

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def worker(app: tether.App) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(app.run_worker_async(concurrency=10, stop=stop, grace_period=2))
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
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def lease_expired(store: Store, run_id: str) -> bool:
    run = await store.get_run(run_id)
    return run is not None and run.lease_expires is not None and run.lease_expires < time.time()


# --- renewal -----------------------------------------------------------------------------------


async def test_a_failed_renewal_is_retried_before_the_lease_runs_out(store_url: str) -> None:
    store = open_store(store_url)
    await store.open()
    try:
        await store.create_run(NewRun(id="r", workflow="wf", version="1", input={}))
        sent = time.monotonic()
        [claim] = await store.claim_runs("w1", [("wf", "1")], limit=1, lease_seconds=3)
        leases = Leases(store, "w1", 3.0)
        leases.hold("r", sent)
        real = store.heartbeat
        calls: list[bool] = []

        async def flaky(*args: Any, **kwargs: Any) -> Any:
            # The store is away for the first three renewals (one due each second).
            if len(calls) < 3:
                calls.append(False)
                raise tether.StoreUnavailable("database restarting")
            beat = await real(*args, **kwargs)
            calls.append(True)
            return beat

        store.heartbeat = flaky  # type: ignore[method-assign]
        keeper = asyncio.create_task(leases.keep())
        try:
            while not any(calls):
                # Another worker keeps trying to take the run over meanwhile.
                assert await store.claim_runs("w2", [("wf", "1")], limit=1, lease_seconds=3) == []
                await asyncio.sleep(0.05)
        finally:
            keeper.cancel()
        run = await store.get_run("r")
        assert run is not None and run.lease_owner == "w1" and run.fencing == claim.token
        deadline = leases.deadline("r")
        assert deadline is not None and deadline > sent + 3.0
    finally:
        await store.close()


async def test_a_renewal_gives_no_new_deadline_to_a_run_taken_over(store_url: str) -> None:
    store = open_store(store_url)
    await store.open()
    try:
        for run_id in ("kept", "lost"):
            await store.create_run(NewRun(id=run_id, workflow="wf", version="1", input={}))
        sent = time.monotonic()
        await store.claim_runs("w1", [("wf", "1")], limit=2, lease_seconds=0.3)
        leases = Leases(store, "w1", 0.3)
        for run_id in ("kept", "lost"):
            leases.hold(run_id, sent)
        await until(lambda: lease_expired(store, "lost"))
        assert await store.claim_run("lost", "w2", lease_seconds=30) is not None

        beat = await leases.renew()
        assert beat.renewed_ids == {"kept"}
        assert (leases.deadline("kept") or 0) > time.monotonic()
        assert (leases.deadline("lost") or 0) <= time.monotonic()
        assert await leases.ensure("kept")
        assert not await leases.ensure("lost"), "a step could start on a run taken over"
    finally:
        await store.close()


async def test_a_renewal_extends_only_the_leases_the_store_renewed(store_url: str) -> None:
    store = open_store(store_url)
    await store.open()
    try:
        for run_id in ("kept", "lost"):
            await store.create_run(NewRun(id=run_id, workflow="wf", version="1", input={}))
        sent = time.monotonic()
        claims = await store.claim_runs("w1", [("wf", "1")], limit=2, lease_seconds=0.3)
        assert {c.run.id for c in claims} == {"kept", "lost"}
        leases = Leases(store, "w1", 0.3)
        for c in claims:
            leases.hold(c.run.id, sent)
        # w1 misses its renewals (a pause, an outage); w2 takes "lost" over meanwhile.
        await until(lambda: lease_expired(store, "lost"))
        taken = await store.claim_run("lost", "w2", lease_seconds=30)
        assert taken is not None and taken.recovered
        before = leases.deadline("lost")
        beat = await leases.renew()
        assert beat.renewed_ids == {"kept"}
        kept = leases.deadline("kept")
        assert kept is not None and before is not None and kept > before
        # The taken-over run keeps its old, passed deadline: nothing more starts for it here.
        assert leases.deadline("lost") == before
        assert await leases.ensure("lost") is False
        assert await leases.ensure("kept") is True
    finally:
        await store.close()


# --- fenced starts -----------------------------------------------------------------------------


def paused_app(store_url: str) -> tuple[tether.App, asyncio.Event, list[str]]:
    """A workflow whose code pauses between two steps until `gate` is set, as a SIGSTOPped
    worker would."""
    app = tether.App(store_url, lease_seconds=0.3)
    gate = asyncio.Event()
    started: list[str] = []

    @app.step
    async def first() -> int:
        started.append("first")
        return 1

    @app.step
    async def second() -> int:
        started.append("second")
        return 2

    @app.workflow(name="paused", version="1")
    async def paused(ctx: tether.Context) -> int:
        one = await first()
        await gate.wait()
        return one + await second()

    return app, gate, started


def renewals_fail(app: tether.App) -> list[bool]:
    """While the returned list holds True, every lease renewal fails."""
    outage = [True]
    real = app.store.heartbeat

    async def heartbeat(*args: Any, **kwargs: Any) -> Any:
        if outage[0]:
            raise tether.StoreUnavailable("cut off from the database")
        return await real(*args, **kwargs)

    app.store.heartbeat = heartbeat  # type: ignore[method-assign]
    return outage


async def test_no_step_starts_once_the_lease_was_taken_over(store_url: str) -> None:
    app, gate, started = paused_app(store_url)
    outage = renewals_fail(app)
    outage[0] = False
    run = asyncio.create_task(app.run_async("paused", {}, run_id="z"))
    await until(lambda: started == ["first"])
    await until(lambda: _journaled(app, "z", 1))
    outage[0] = True  # its renewals stop, as a paused or cut-off worker's do
    await until(lambda: lease_expired(app.store, "z"))
    taken = await app.store.claim_run("z", "taker", lease_seconds=30)
    assert taken is not None and taken.recovered
    outage[0] = False  # the store answers again: the renewal says the run is not ours
    gate.set()
    info = await asyncio.wait_for(run, 10)
    assert started == ["first"], "a step began after the run was taken over"
    assert info.lease_owner == "taker" and info.status == "running"


async def test_a_late_lease_still_held_is_renewed_and_the_step_starts(store_url: str) -> None:
    app, gate, started = paused_app(store_url)
    outage = renewals_fail(app)
    outage[0] = False
    run = asyncio.create_task(app.run_async("paused", {}, run_id="late"))
    await until(lambda: _journaled(app, "late", 1))
    outage[0] = True
    await until(lambda: lease_expired(app.store, "late"))
    outage[0] = False  # nobody took it over: the step start renews it and goes on
    gate.set()
    info = await asyncio.wait_for(run, 10)
    assert info.status == "succeeded" and info.output == 3
    assert started == ["first", "second"]


async def _journaled(app: tether.App, run_id: str, seq: int) -> bool:
    steps = await app.store.load_steps(run_id)
    return any(s.seq == seq and s.status == "completed" for s in steps)


# --- handback -----------------------------------------------------------------------------------


def one_step_app(store_url: str, name: str, ran: list[str]) -> tether.App:
    app = tether.App(store_url, lease_seconds=5)  # releases every 5/3 s; a takeover only after 5 s

    @app.step
    async def work() -> str:
        ran.append(name)
        return name

    @app.workflow(name="once", version="1")
    async def once(ctx: tether.Context) -> str:
        return await work()

    return app


async def test_a_run_dropped_on_a_store_error_is_handed_back(store_url: str) -> None:
    ran: list[str] = []
    first = one_step_app(store_url, "first", ran)
    second = one_step_app(store_url, "second", ran)
    # The first worker's journal writes and claims fail (its store is away); it drops the run.
    dropped = asyncio.Event()
    real_claim = first.store.claim_runs

    async def write_step(*args: Any, **kwargs: Any) -> Any:
        dropped.set()
        raise tether.StoreUnavailable("database restarting")

    async def claim_runs(*args: Any, **kwargs: Any) -> Any:
        if dropped.is_set():
            raise tether.StoreUnavailable("database restarting")
        return await real_claim(*args, **kwargs)

    first.store.write_step = write_step  # type: ignore[method-assign]
    first.store.claim_runs = claim_runs  # type: ignore[method-assign]
    await first.store.open()
    await first.store.create_run(NewRun(id="h", workflow="once", version="1", input={}))
    async with worker(first):
        await asyncio.wait_for(dropped.wait(), 20)
        # Handed back (released, fenced by its token) as soon as the store takes the release:
        # the other worker continues at once, as a claim, not a takeover after the lease.
        async with worker(second):
            await until(lambda: _status(second, "h", "succeeded", "failed"), timeout=30)
    info = await second.get_run_async("h")
    assert info.status == "succeeded" and info.output == "second"
    assert ran == ["first", "second"]
    assert info.recoveries == 0, "the run was taken over instead of handed back"


# --- poison runs by evidence -------------------------------------------------------------------


def counting_app(store_url: str) -> tether.App:
    app = tether.App(store_url, lease_seconds=0.2, max_recoveries=2)

    @app.step
    async def work(i: int) -> int:
        return i

    @app.workflow(name="count", version="1")
    async def count(ctx: tether.Context, n: int) -> int:
        return sum([await work(i) for i in range(n)])

    return app


async def holders_die(app: tether.App, run_id: str, journal: list[bool]) -> None:
    """One holder after another claims the run (taking over from the one before), journals its
    next step when told to by `journal`, and dies."""
    seq = 0
    for index, progresses in enumerate(journal):
        if index:
            await until(lambda: lease_expired(app.store, run_id))
        claim = await app.store.claim_run(run_id, f"dead{index}", lease_seconds=0.2)
        assert claim is not None
        if progresses:
            seq += 1
            done = StepRecord(run_id, seq, "work", "step", "completed", output=seq - 1)
            assert await app.store.write_step(run_id, claim.token, done)
    await until(lambda: lease_expired(app.store, run_id))


async def test_a_run_taken_over_ten_times_while_progressing_succeeds(store_url: str) -> None:
    app = counting_app(store_url)
    await app.store.create_run(NewRun(id="p", workflow="count", version="1", input={"n": 12}))
    await holders_die(app, "p", [True] * 10)  # a rolling deploy, kills elsewhere
    async with worker(app):
        await until(lambda: _status(app, "p", "succeeded", "failed"))
    info = await app.get_run_async("p")
    assert info.status == "succeeded", info.error
    assert info.output == sum(range(12)) and info.recoveries == 10


async def test_a_run_that_kills_its_workers_at_one_step_fails_as_poison(store_url: str) -> None:
    app = counting_app(store_url)
    await app.store.create_run(NewRun(id="k", workflow="count", version="1", input={"n": 12}))
    # Healthy progress first, then two holders in a row die before journaling anything.
    await holders_die(app, "k", [True, True, True, True, False, False])
    async with worker(app):
        await until(lambda: _status(app, "k", "succeeded", "failed"))
    info = await app.get_run_async("k")
    assert info.status == "failed" and info.error is not None
    assert info.error["type"] == "PoisonRun"
    assert "lost 3 workers in a row" in info.error["message"]
    assert "max_recoveries=2" in info.error["message"]


async def _status(app: tether.App, run_id: str, *statuses: str) -> bool:
    return (await app.get_run_async(run_id)).status in statuses
