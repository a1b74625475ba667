"""Background tasks a worker runs beside its runs, registered by the layers above the engine.

The engine keeps schedules and retention itself; a layer above (alert evaluation and webhook
delivery in `tether.observe.alerts`) joins every worker of an App by registering a coroutine
function ``task(app, stop)`` here. `Worker.run` starts each one once it has announced itself,
and at shutdown sets `stop` and cancels the tasks still running. A task that raises is logged
and started again after a pause (1 s, doubling to a minute), so one bad moment does not turn
alerting off for the worker's life; it should still catch its own transient failures.
The list lives in ``app.extensions``, so two Apps in one process keep separate tasks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("tether.worker")

BackgroundTask = Callable[[Any, asyncio.Event], Awaitable[None]]
"""``async def task(app, stop)``: runs until `stop` is set (or it is cancelled)."""

_KEY = "tether.engine.background"


def add_background_task(app: Any, task: BackgroundTask) -> None:
    """Have every worker of `app` run `task` (once per worker; adding it again does nothing)."""
    tasks: list[BackgroundTask] = app.extensions.setdefault(_KEY, [])
    if task not in tasks:
        tasks.append(task)


def background_tasks(app: Any) -> list[BackgroundTask]:
    """The tasks registered for `app`'s workers."""
    return list(app.extensions.get(_KEY) or ())


def start_background_tasks(app: Any, stop: asyncio.Event) -> list[asyncio.Task[None]]:
    """Start the registered tasks (a worker's start)."""
    return [
        asyncio.create_task(_guarded(task, app, stop), name=f"tether-bg-{_name(task)}")
        for task in background_tasks(app)
    ]


async def stop_background_tasks(tasks: list[asyncio.Task[None]], grace: float = 2.0) -> None:
    """Give the tasks (whose `stop` is set) `grace` seconds to return, then cancel the rest."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)


RESTART_AFTER = (1.0, 60.0)
"""Seconds before a background task that raised starts again: first, and at most."""


async def _guarded(task: BackgroundTask, app: Any, stop: asyncio.Event) -> None:
    pause = RESTART_AFTER[0]
    while not stop.is_set():
        try:
            await task(app, stop)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s stopped with an error; starting it again in "
                          "%.0fs", _name(task), pause)
        try:
            await asyncio.wait_for(stop.wait(), pause)
        except TimeoutError:
            pass
        pause = min(pause * 2, RESTART_AFTER[1])


def _name(task: BackgroundTask) -> str:
    return str(getattr(task, "__qualname__", None) or getattr(task, "__name__", None) or task)


class Later:
    """A background task started only once `delay` seconds have passed; `cancel` stops it,
    started or not. For work that is seldom due before its owner ends (an `App.run`'s lease
    renewals and cancel watch): a timer costs far less than a task started and cancelled."""

    def __init__(self, delay: float, start: Callable[[], Awaitable[None]]) -> None:
        self._start = start
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(delay, self._begin)

    def _begin(self) -> None:
        self._task = asyncio.ensure_future(self._start())

    def cancel(self) -> None:
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
