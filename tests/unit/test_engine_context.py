"""Journal semantics of the workflow context, on an in-memory store."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

import tether
from tether.store.base import StepRecord


def make_app() -> tether.App:
    return tether.App("sqlite:///:memory:")


async def test_gather_numbers_steps_in_call_order_every_time() -> None:
    app = make_app()
    order: list[str] = []

    @app.step
    async def slow(tag: str, delay: float) -> str:
        await asyncio.sleep(delay)
        order.append(tag)
        return tag

    @app.workflow
    async def fan(ctx: tether.Context) -> list[str]:
        # The slow one is called first, finishes last: its number is still 1.
        return list(await asyncio.gather(slow("a", 0.05), slow("b", 0.0), slow("c", 0.01)))

    info = await app.run_async("fan")
    assert info.status == "succeeded"
    assert order == ["b", "c", "a"]
    assert [(s.seq, s.output) for s in info.steps] == [(1, "a"), (2, "b"), (3, "c")]


async def test_now_and_uuid_are_stable_across_resume() -> None:
    app = make_app()

    @app.workflow
    async def stamp(ctx: tether.Context) -> dict[str, str]:
        first = {"now": ctx.now().isoformat(), "id": str(ctx.uuid())}
        await ctx.wait_for_signal("go")
        return first

    started = await app.run_async("stamp")
    assert started.status == "waiting"
    recorded = {s.name: s.output for s in started.steps}
    await app.signal_async(started.id, "go")
    done = await app.run_async("stamp", run_id=started.id)
    assert done.status == "succeeded"
    assert done.output["id"] == recorded["uuid"]
    assert done.output["now"].startswith(
        __import__("datetime").datetime.fromtimestamp(recorded["now"], tz=__import__("datetime").UTC).isoformat()[:19]
    )


async def test_a_signal_sent_before_the_wait_is_kept_and_consumed_in_order() -> None:
    app = make_app()

    @app.workflow
    async def inbox(ctx: tether.Context) -> list[Any]:
        await ctx.sleep(0)  # a boundary before the waits
        return [await ctx.wait_for_signal("msg"), await ctx.wait_for_signal("msg")]

    handle = await app.start_async("inbox")
    await app.signal_async(handle.id, "msg", 1)
    await app.signal_async(handle.id, "msg", {"n": 2})
    info = await app.run_async("inbox", run_id=handle.id)
    assert info.status == "succeeded"
    assert info.output == [1, {"n": 2}]


async def test_signal_timeout_raises_signal_timeout_which_the_workflow_can_handle() -> None:
    app = make_app()

    @app.workflow
    async def impatient(ctx: tether.Context) -> str:
        try:
            await ctx.wait_for_signal("approval", timeout=timedelta(milliseconds=300))
        except TimeoutError:
            return "timed out"
        return "approved"

    first = await app.run_async("impatient")
    assert first.status == "waiting" and first.waiting_for == "approval"
    assert first.wake_at is not None
    while time.time() <= first.wake_at.timestamp():  # noqa: ASYNC110 - polls the clock
        await asyncio.sleep(0.01)
    info = await app.run_async("impatient", run_id=first.id)
    assert info.status == "succeeded" and info.output == "timed out"
    assert info.steps[-1].status == "failed"


async def test_retries_are_journaled_and_a_final_failure_replays_as_step_failed() -> None:
    app = make_app()
    attempts: list[int] = []

    @app.step(retry=tether.Retry(max_attempts=3, initial_delay=0.001, jitter=0))
    async def flaky() -> str:
        attempts.append(tether.current_step().attempt)
        raise ConnectionError("upstream reset")

    @app.workflow
    async def wf(ctx: tether.Context) -> str:
        try:
            await flaky()
        except tether.StepFailed as failed:
            caught = f"{failed.error_type} after {failed.attempts}"
        await ctx.wait_for_signal("again")
        return caught

    first = await app.run_async("wf")
    assert attempts == [1, 2, 3]
    step = first.steps[0]
    assert (step.status, step.attempts, step.error and step.error["type"]) == (
        "failed", 3, "ConnectionError",
    )
    await app.signal_async(first.id, "again")
    done = await app.run_async("wf", run_id=first.id)
    assert done.output == "ConnectionError after 3"
    assert attempts == [1, 2, 3]  # the recorded failure was replayed, not retried


async def test_a_crash_mid_retries_does_not_reset_the_attempt_count() -> None:
    app = make_app()
    attempts: list[int] = []

    @app.step(retry=tether.Retry(max_attempts=3, initial_delay=0.001, jitter=0))
    async def flaky() -> str:
        attempts.append(tether.current_step().attempt)
        raise ConnectionError("still down")

    @app.workflow
    async def wf(ctx: tether.Context) -> None:
        await flaky()

    handle = await app.start_async("wf")
    # Simulate a worker that died after two failed attempts were journaled.
    claim = await app.store.claim_run(handle.id, "dead-worker", lease_seconds=10)
    assert claim is not None
    await app.store.write_step(
        handle.id,
        claim.token,
        StepRecord(handle.id, 1, "flaky", "step", "retrying", attempts=2, wake_at=0.0,
                   error={"type": "ConnectionError", "message": "down"}),
    )
    await app.store.release_run(handle.id, claim.token)
    info = await app.run_async("wf", run_id=handle.id)
    assert attempts == [3]
    assert info.status == "failed"
    assert "after 3 attempt" in info.error["message"]


async def test_long_backoff_becomes_a_durable_sleep() -> None:
    app = make_app()
    calls: list[int] = []

    @app.step(
        retry=tether.Retry(max_attempts=2, initial_delay=60, max_delay=120, jitter=0, durable_after=5)
    )
    async def rate_limited() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("429")
        return "ok"

    @app.workflow
    async def wf(ctx: tether.Context) -> str:
        return await rate_limited()

    info = await app.run_async("wf")
    assert info.status == "waiting"  # released, not sleeping in the worker
    assert info.steps[0].status == "retrying" and info.wake_at is not None
    assert 55 < (info.wake_at - info.updated_at).total_seconds() < 65


class Profile(BaseModel):
    name: str
    employees: int


async def test_pydantic_models_round_trip_through_the_journal() -> None:
    app = make_app()

    @app.step
    async def research(name: str) -> Profile:
        return Profile(name=name, employees=42)

    @app.workflow
    async def wf(ctx: tether.Context, company: str) -> dict[str, Any]:
        profile = await research(company)
        assert isinstance(profile, Profile)
        await ctx.wait_for_signal("go")
        return {"employees": profile.employees}

    first = await app.run_async("wf", {"company": "acme"})
    assert first.steps[0].output == {"name": "acme", "employees": 42}
    await app.signal_async(first.id, "go")
    done = await app.run_async("wf", run_id=first.id)  # replay rebuilds a Profile
    assert done.output == {"employees": 42}


async def test_step_budget_fails_the_run_naming_the_limit() -> None:
    app = make_app()

    @app.step
    async def tick(i: int) -> int:
        return i

    @app.workflow
    async def loop(ctx: tether.Context) -> None:
        for i in range(100):
            await tick(i)

    info = await app.run_async("loop", budget=tether.Budget(max_steps=5))
    assert info.status == "failed"
    assert info.error["type"] == "BudgetExceeded"
    assert "max_steps=5" in info.error["message"]
    assert len(info.steps) == 5
    with pytest.raises(tether.BudgetExceeded) as caught:
        await tether.RunHandle(app, info.id).result_async(timeout=1)
    assert caught.value.limit == "max_steps"


async def test_step_timeout_is_a_retryable_failure() -> None:
    app = make_app()
    tries: list[int] = []

    @app.step(timeout=0.02, retry=tether.Retry(max_attempts=2, initial_delay=0, jitter=0))
    async def hangs() -> str:
        tries.append(1)
        if len(tries) == 1:
            await asyncio.sleep(10)
        return "second try"

    @app.workflow
    async def wf(ctx: tether.Context) -> str:
        return await hangs()

    info = await app.run_async("wf")
    assert info.output == "second try" and info.steps[0].attempts == 2


async def test_sync_steps_run_off_the_event_loop() -> None:
    app = make_app()
    import threading

    @app.step
    def blocking(x: int) -> str:
        return threading.current_thread().name

    @app.workflow
    async def wf(ctx: tether.Context) -> str:
        return await blocking(1)

    info = await app.run_async("wf")
    assert info.output.startswith("tether-step")


async def test_invalid_input_is_refused_at_start_naming_the_field() -> None:
    app = make_app()

    @app.workflow
    async def hello(ctx: tether.Context, who: str, times: int = 1) -> str:
        return who * times

    with pytest.raises(tether.UserError, match=r"invalid input for workflow 'hello': times"):
        await app.start_async("hello", {"who": "a", "times": "many"})
    with pytest.raises(tether.UserError, match="whom"):
        await app.start_async("hello", {"whom": "a"})
    with pytest.raises(tether.UnknownWorkflow, match="known: hello"):
        await app.start_async("helo", {})
    assert await app.list_runs_async() == []  # nothing was stored


async def test_a_non_json_result_fails_the_step_with_a_clear_message() -> None:
    app = make_app()

    @app.step
    async def opaque() -> object:
        return object()

    @app.workflow
    async def wf(ctx: tether.Context) -> None:
        await opaque()

    info = await app.run_async("wf")
    assert info.status == "failed"
    assert "not JSON-serialisable" in info.error["message"]


async def test_a_caught_nondeterminism_error_still_fails_the_run() -> None:
    app = make_app()

    @app.step
    async def a() -> int:
        return 1

    @app.workflow
    async def wf(ctx: tether.Context) -> str:
        try:
            await a()
        except Exception:
            return "swallowed"
        return "ok"

    handle = await app.start_async("wf")
    claim = await app.store.claim_run(handle.id, "w", lease_seconds=10)
    assert claim is not None
    await app.store.write_step(handle.id, claim.token, StepRecord(handle.id, 1, "b", "step", "completed"))
    await app.store.release_run(handle.id, claim.token)
    info = await app.run_async("wf", run_id=handle.id)
    assert info.status == "failed" and info.error["type"] == "NonDeterminismError"


async def test_a_finished_runs_context_is_freed_without_the_garbage_collector() -> None:
    # With hundreds of runs on a worker, a context (its journal, its workflow's frames) that
    # only the collector can free stays in memory after its run ended, and is traversed by
    # every full collection until then.
    import gc
    import weakref

    app = make_app()
    seen: list[weakref.ref[tether.Context]] = []

    @app.step
    async def work(n: int) -> int:
        return n + 1

    @app.workflow
    async def flow(ctx: tether.Context) -> int:
        seen.append(weakref.ref(ctx))
        return await work(1)

    await app.run_async("flow")  # the first run pays one-time costs (imports, caches)
    gc.collect()
    gc.disable()
    try:
        info = await app.run_async("flow")
        assert info.status == "succeeded"
        assert seen[-1]() is None, "the run's Context is kept alive by a reference cycle"
    finally:
        gc.enable()
