"""Waiting for the first of several signals (`ctx.wait_for_any`), and what happens to
``asyncio.wait`` / ``asyncio.gather`` over plain signal waits — on both stores, with
in-process workers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import tether
from tests.integration.test_engine_runs import until, worker

pytestmark = pytest.mark.timeout(60)


def build(store_url: str) -> tether.App:
    app = tether.App(store_url)

    @app.workflow
    async def decide(ctx: tether.Context) -> dict[str, Any]:
        name, payload = await ctx.wait_for_any(["approve", "reject"])
        return {"name": name, "payload": payload}

    @app.workflow
    async def decide_twice(ctx: tether.Context) -> list[Any]:
        first = await ctx.wait_for_any(["approve", "reject"])
        second = await ctx.wait_for_any(["approve", "reject"])
        return [list(first), list(second)]

    @app.workflow
    async def decide_soon(ctx: tether.Context) -> str:
        try:
            await ctx.wait_for_any(["approve", "reject"], timeout=0.3)
        except tether.SignalTimeout as exc:
            return f"timeout: {exc}"
        return "signal"

    return app


async def waiting(app: tether.App, run_id: str) -> bool:
    return (await app.get_run_async(run_id)).status == "waiting"


async def test_the_first_of_two_signals_wins_and_wakes_the_run(store_url: str) -> None:
    app = build(store_url)
    async with worker(app):
        handle = await app.start_async("decide")
        await until(lambda: waiting(app, handle.id))
        assert (await app.get_run_async(handle.id)).waiting_for == "approve|reject"
        # "reject" is the second name: a run woken only by its first name would stay waiting.
        await app.signal_async(handle.id, "reject", {"why": "too expensive"})
        result = await handle.result_async(timeout=20)
    assert result == {"name": "reject", "payload": {"why": "too expensive"}}


async def test_two_signals_sent_before_the_wait_the_oldest_wins_the_other_stays(
    store_url: str,
) -> None:
    app = build(store_url)
    handle = await app.start_async("decide_twice")
    # Both arrive before any worker reaches the wait; "reject" is older though listed second.
    await app.signal_async(handle.id, "reject", 1)
    await app.signal_async(handle.id, "approve", 2)
    async with worker(app):
        result = await handle.result_async(timeout=20)
    assert result == [["reject", 1], ["approve", 2]]
    signals = await app.store.list_signals(handle.id)
    assert [(s.name, s.consumed_seq) for s in signals] == [("reject", 1), ("approve", 2)]


async def test_a_wait_for_any_times_out_with_signal_timeout(store_url: str) -> None:
    app = build(store_url)
    async with worker(app):
        handle = await app.start_async("decide_soon")
        result = await handle.result_async(timeout=20)
    assert result.startswith("timeout: ")
    assert "'approve|reject'" in result
    info = await app.get_run_async(handle.id)
    assert info.steps[0].status == "failed"
    assert info.steps[0].error and info.steps[0].error["type"] == "SignalTimeout"


async def test_a_takeover_replays_the_recorded_winner(store_url: str) -> None:
    app = tether.App(store_url)
    gate = asyncio.Event()

    @app.step
    async def hold() -> None:
        await gate.wait()

    @app.workflow
    async def decide_then_work(ctx: tether.Context) -> str:
        name, _ = await ctx.wait_for_any(["approve", "reject"])
        await hold()
        return name

    handle = await app.start_async("decide_then_work")
    await app.signal_async(handle.id, "reject")
    stop = asyncio.Event()
    first = asyncio.create_task(app.run_worker_async(stop=stop, grace_period=0.1))
    await until(lambda: _journaled(app, handle.id))
    stop.set()  # the worker stops inside `hold`; the run goes back for another worker
    await asyncio.wait_for(first, 10)
    assert (await app.get_run_async(handle.id)).status == "queued"
    # Now only "approve" is unconsumed: consuming afresh on replay would pick it.
    await app.signal_async(handle.id, "approve")
    gate.set()
    async with worker(app):
        assert await handle.result_async(timeout=20) == "reject"
    signals = await app.store.list_signals(handle.id)
    assert [(s.name, s.consumed_seq) for s in signals] == [("reject", 1), ("approve", None)]


async def _journaled(app: tether.App, run_id: str) -> bool:
    steps = (await app.get_run_async(run_id)).steps
    return bool(steps) and steps[0].status == "completed"


async def test_wait_for_any_rejects_names_it_cannot_wait_for(store_url: str) -> None:
    app = tether.App(store_url)

    @app.workflow
    async def bad(ctx: tether.Context, names: Any) -> None:
        await ctx.wait_for_any(names)

    for names, message in [
        ("approve", "takes a list of signal names"),
        ([], "at least one signal name"),
        (["a|b"], "contains '|'"),
        (["tether.budget"], "reserved"),
    ]:
        info = await app.run_async("bad", {"names": names})
        assert info.status == "failed"
        assert info.error and info.error["type"] == "UserError"
        assert message in info.error["message"]


async def test_asyncio_wait_over_two_waits_fails_instead_of_succeeding(store_url: str) -> None:
    app = tether.App(store_url)

    @app.workflow
    async def race(ctx: tether.Context) -> str:
        a = asyncio.ensure_future(ctx.wait_for_signal("a"))
        b = asyncio.ensure_future(ctx.wait_for_signal("b"))
        done, _ = await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
        return "a" if a in done else "b"

    info = await app.run_async("race")  # no signal is ever sent
    assert info.status == "failed", (info.status, info.output)
    assert info.error and info.error["type"] == "UserError"
    assert "ctx.wait_for_any" in info.error["message"]
    assert info.output is None


async def test_gather_over_two_waits_waits_for_both(store_url: str) -> None:
    app = tether.App(store_url)

    @app.workflow
    async def both(ctx: tether.Context) -> list[Any]:
        return list(await asyncio.gather(ctx.wait_for_signal("a"), ctx.wait_for_signal("b")))

    async with worker(app):
        handle = await app.start_async("both")
        await until(lambda: waiting(app, handle.id))
        await app.signal_async(handle.id, "b", 2)
        await app.signal_async(handle.id, "a", 1)
        assert await handle.result_async(timeout=20) == [1, 2]


async def test_a_task_group_over_two_waits_waits_for_both(store_url: str) -> None:
    app = tether.App(store_url)

    @app.workflow
    async def both(ctx: tether.Context) -> list[Any]:
        async with asyncio.TaskGroup() as group:
            a = group.create_task(ctx.wait_for_signal("a"))
            b = group.create_task(ctx.wait_for_signal("b"))
        return [a.result(), b.result()]

    async with worker(app):
        handle = await app.start_async("both")
        # The suspension reached the executor inside an exception group: the run still waits.
        await until(lambda: waiting(app, handle.id))
        await app.signal_async(handle.id, "b", 2)
        await app.signal_async(handle.id, "a", 1)
        assert await handle.result_async(timeout=20) == [1, 2]


def test_a_zero_timeout_times_out_at_once_unless_a_signal_is_there(sqlite_url: str) -> None:
    # timeout=0 waited for ever (0 was taken as "no timeout").
    app = tether.App(sqlite_url)

    @app.workflow
    async def poll(ctx: tether.Context) -> list[str]:
        seen = []
        for _ in range(2):
            try:
                seen.append((await ctx.wait_for_any(["a", "b"], timeout=0))[0])
            except tether.SignalTimeout:
                seen.append("nothing")
        try:
            seen.append(await ctx.wait_for_signal("c", timeout=0))
        except tether.SignalTimeout:
            seen.append("nothing")
        return seen

    app.start("poll", run_id="p")
    app.signal("p", "b")
    info = app.run("poll", run_id="p")
    assert info.status == "succeeded" and info.output == ["b", "nothing", "nothing"]


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 1e12])
def test_a_timer_no_date_can_hold_is_refused(sqlite_url: str, bad: float) -> None:
    # An infinite or huge timeout was stored as the run's wake-up time: `tether runs` (and
    # every list of runs) then failed on it with "year 33715 is out of range"; NaN waited
    # for ever, and app.start(delay=nan) left a run no worker would ever claim.
    app = tether.App(sqlite_url)

    @app.workflow
    async def waits(ctx: tether.Context, how: str, seconds: float) -> str:
        if how == "sleep":
            await ctx.sleep(seconds)
        else:
            await ctx.wait_for_any(["a"], timeout=seconds)
        return "done"

    for how in ("sleep", "any"):
        info = app.run("waits", {"how": how, "seconds": bad})
        assert info.status == "failed", info
        assert info.error is not None and "a finite number up to a century" in info.error["message"]
    with pytest.raises(tether.UserError, match=r"app\.start\(delay=\) takes seconds"):
        app.start("waits", {"how": "sleep", "seconds": 1}, delay=bad)
    assert len(app.list_runs()) == 2  # the list of runs can be read; the start made nothing
