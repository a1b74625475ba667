"""A worker's background tasks (alert evaluation, webhook delivery) survive their own errors."""

from __future__ import annotations

import asyncio

import pytest

from tether.engine import background


async def test_a_background_task_that_raises_is_started_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One bad moment at start (a header httpx refused, a store blip) used to stop the task for
    # the worker's life: no alert was ever evaluated again on that worker.
    monkeypatch.setattr(background, "RESTART_AFTER", (0.01, 0.02))
    calls: list[int] = []
    stop = asyncio.Event()

    async def flaky(app: object, stop_: asyncio.Event) -> None:
        calls.append(len(calls))
        if len(calls) < 3:
            raise RuntimeError("not yet")
        await stop_.wait()

    task = asyncio.create_task(background._guarded(flaky, object(), stop))  # pyright: ignore[reportPrivateUsage]
    for _ in range(500):
        if len(calls) >= 3:
            break
        await asyncio.sleep(0.01)
    assert len(calls) == 3
    stop.set()
    await asyncio.wait_for(task, 5)
    assert len(calls) == 3  # a task that returns is not started again


async def test_a_stopped_worker_does_not_restart_a_failing_task() -> None:
    stop = asyncio.Event()
    calls: list[int] = []

    async def failing(app: object, stop_: asyncio.Event) -> None:
        calls.append(1)
        stop_.set()  # the worker stops while the task fails
        raise RuntimeError("boom")

    await asyncio.wait_for(background._guarded(failing, object(), stop), 5)  # pyright: ignore[reportPrivateUsage]
    assert calls == [1]
