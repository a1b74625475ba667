"""Child runs (`ctx.run_child`, `ctx.start_child`) on both stores, with in-process workers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import tether
from tests.integration.test_engine_runs import until, worker
from tether.store.base import NewRun

pytestmark = pytest.mark.timeout(90)


def build(store_url: str) -> tether.App:
    app = tether.App(store_url)

    @app.step
    async def spend(n: int) -> int:
        tether.current_step().add_usage(tether.Usage(llm_calls=n))
        return n

    @app.workflow
    async def summarise(ctx: tether.Context, text: str) -> str:
        await spend(2)
        return text.upper()

    @app.workflow
    async def parent(ctx: tether.Context, pages: list[str]) -> list[str]:
        out = [await ctx.run_child("summarise", {"text": pages[0]})]
        handles = [await ctx.start_child(summarise, {"text": p}) for p in pages[1:]]
        out += [await h.result() for h in handles]
        return out

    @app.workflow
    async def gate(ctx: tether.Context) -> Any:
        return await ctx.wait_for_signal("go")

    @app.workflow
    async def waits_on_gate(ctx: tether.Context) -> Any:
        try:
            return await ctx.run_child("gate")
        except tether.RunCancelled as exc:
            return f"child cancelled: {exc}"

    @app.step
    async def hold() -> None:
        await asyncio.sleep(3600)

    @app.workflow
    async def starts_then_holds(ctx: tether.Context) -> None:
        await ctx.start_child("gate")
        await hold()

    @app.workflow
    async def fails(ctx: tether.Context) -> None:
        raise ValueError("nope")

    @app.workflow
    async def catches(ctx: tether.Context) -> str:
        try:
            await ctx.run_child("fails")
        except tether.RunFailed as exc:
            return f"{exc.error_type}"
        return "no error"

    @app.workflow
    async def twice(ctx: tether.Context) -> int:
        return await spend(1) + await spend(1) + await spend(1)

    @app.workflow
    async def over_budget(ctx: tether.Context) -> Any:
        await spend(2)
        return await ctx.run_child("twice")

    @app.workflow
    async def charged(ctx: tether.Context) -> int:
        await ctx.run_child("summarise", {"text": "x"})  # the child spends 2 model calls
        return await spend(2) + await spend(1)

    return app


async def test_a_childs_spend_counts_against_the_parents_budget(store_url: str) -> None:
    app = build(store_url)
    async with worker(app):
        handle = await app.start_async("charged", budget=tether.Budget(max_llm_calls=3))
        with pytest.raises(tether.BudgetExceeded):
            await handle.result_async(timeout=60)  # 2 (child) + 2 = 4 > 3 before the last step


async def test_children_run_and_the_parent_gets_their_results(store_url: str) -> None:
    app = build(store_url)
    async with worker(app):
        handle = await app.start_async("parent", {"pages": ["a", "b", "c"]}, labels={"team": "t1"})
        result = await handle.result_async(timeout=60)
    assert result == ["A", "B", "C"]
    info = await app.get_run_async(handle.id)
    children = await app.list_runs_async(workflow="summarise", limit=10)
    assert sorted(c.id for c in children) == sorted(f"{handle.id}.{s}" for s in (1, 3, 4))
    assert info.children == [f"{handle.id}.{s}" for s in (1, 3, 4)]  # `tether show` lists them
    assert info.child_of is None
    for child in children:
        assert child.parent_id == handle.id
        assert child.child_of == handle.id  # a child, not a fork
        assert child.labels["team"] == "t1"  # inherited: its spend lands on the caller
    # Each child's two model calls count against the parent's budget ledger.
    spent = sum(
        (r.output or {}).get("usage", {}).get("llm_calls", 0)
        for r in info.steps if r.kind == "child_wait"
    )
    assert spent == 6


async def test_a_child_that_fails_raises_in_the_parent(store_url: str) -> None:
    app = build(store_url)
    async with worker(app):
        handle = await app.start_async("catches")
        assert await handle.result_async(timeout=60) == "ValueError"


async def test_a_child_is_limited_by_what_is_left_of_the_parents_budget(store_url: str) -> None:
    app = build(store_url)
    async with worker(app):
        handle = await app.start_async("over_budget", budget=tether.Budget(max_llm_calls=3))
        with pytest.raises(tether.RunFailed):
            await handle.result_async(timeout=60)
        child = await app.get_run_async(f"{handle.id}.2")
    assert child.status == "failed"
    assert child.error is not None and child.error["type"] == "BudgetExceeded"


async def test_cancelling_the_parent_cancels_its_waiting_child(store_url: str) -> None:
    app = build(store_url)
    async with worker(app):
        handle = await app.start_async("waits_on_gate")
        child_id = f"{handle.id}.1"

        async def both_waiting() -> bool:
            return all([await _status(app, i, "waiting") for i in (handle.id, child_id)])

        await until(both_waiting, timeout=30)
        await app.cancel_async(handle.id)
        await until(lambda: _status(app, child_id, "cancelled"), timeout=30)
    assert (await app.get_run_async(handle.id)).status == "cancelled"


async def test_the_worker_of_a_cancelled_parent_cancels_its_children(store_url: str) -> None:
    # `App.cancel` from another process cancels the children in the parent's journal when it
    # is called; a child the parent starts before its worker sees the cancel is not there yet
    # (measured from outside: one child of a fan-out ran to completion in 5 of 5 cancels).
    # Here the cancel request reaches the parent's worker alone, as from a `tether cancel`
    # that read the journal before the start: the worker must cancel the child.
    app = build(store_url)
    async with worker(app):
        handle = await app.start_async("starts_then_holds")
        child_id = f"{handle.id}.1"
        await until(lambda: _status(app, child_id, "waiting"), timeout=30)
        await app.store.cancel_run(handle.id, "stop")
        await until(lambda: _status(app, handle.id, "cancelled"), timeout=30)
        await until(lambda: _status(app, child_id, "cancelled"), timeout=30)
    child = await app.get_run_async(child_id)
    assert child.error is not None and f"parent {handle.id} cancelled" in child.error["message"]


async def test_a_child_created_after_its_parent_was_cancelled_is_not_run(store_url: str) -> None:
    # A start the cancel cut short may still have created the child (it is not journaled, so
    # nothing above finds it): the worker that claims it cancels it instead of running it.
    app = build(store_url)
    await app.store.create_run(NewRun(id="p1", workflow="gate", version=None, input={}))
    await app.store.cancel_run("p1", "stop")
    await app.store.create_run(NewRun(id="p1.1", workflow="summarise", version=None,
                                      input={"text": "x"}, parent_id="p1"))
    async with worker(app):
        await until(lambda: _status(app, "p1.1", "cancelled"), timeout=30)
    child = await app.get_run_async("p1.1")
    assert child.steps == [] and child.output is None


async def test_a_version_fork_of_a_parent_keeps_its_children(store_url: str) -> None:
    # A fork onto another version cancels the source, but the fork waits for the same
    # children: that cancel must not reach them.
    app = build(store_url)

    @app.workflow(name="waits_on_gate", version="2")
    async def waits_on_gate_v2(ctx: tether.Context) -> Any:
        return await ctx.run_child("gate")

    async with worker(app):
        source = await app.start_async("waits_on_gate")
        child_id = f"{source.id}.1"
        await until(lambda: _status(app, child_id, "waiting"), timeout=30)
        await app.fork_async(source.id, version="2")
        # Cancelled at once if it was waiting; if a wake-up had its worker running it just
        # then, when that worker sees the cancel.
        await until(lambda: _status(app, source.id, "cancelled"), timeout=30)
        await app.signal_async(child_id, "go", "done")  # the child is claimed again, and runs
        await until(lambda: _status(app, child_id, "succeeded"), timeout=30)
    # (the fork takes the child's outcome when it looks, within a minute: not waited for here)


async def test_a_child_cancelled_alone_fails_the_wait_of_its_parent(store_url: str) -> None:
    app = build(store_url)
    async with worker(app):
        handle = await app.start_async("waits_on_gate")
        child_id = f"{handle.id}.1"
        await until(lambda: _status(app, child_id, "waiting"), timeout=30)
        await app.cancel_async(child_id)
        result = await handle.result_async(timeout=60)
    assert str(result).startswith("child cancelled")


async def _status(app: tether.App, run_id: str, status: str) -> bool:
    try:
        return (await app.get_run_async(run_id)).status == status
    except tether.UnknownRun:
        return False


async def test_parallel_branches_as_child_runs_on_another_worker(store_url: str) -> None:
    from tether.agents import ChildWorkflow, Parallel

    parents = tether.App(store_url)  # has the pipeline only: it cannot run a branch itself
    parents.register(Parallel("fan", [
        ChildWorkflow("upper", "shout", lambda s: {"text": s.input["text"]}),
        ChildWorkflow("again", "shout", lambda s: {"text": s.input["text"] + "!"}),
    ]))
    kids = tether.App(store_url)

    @kids.workflow(name="shout")
    async def shout(ctx: tether.Context, text: str) -> str:
        return text.upper()

    async with worker(parents), worker(kids):
        handle = await parents.start_async("fan", {"text": "hi"})
        result = await handle.result_async(timeout=60)
        info = await parents.get_run_async(handle.id)
    assert result == {"upper": "HI", "again": "HI!"}
    assert len(info.children) == 2
