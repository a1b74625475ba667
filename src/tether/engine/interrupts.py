"""Interrupting running steps: what a cancel, or a run's ``max_duration`` running out, does to
the steps of the run that are executing right now.

1. A step's function (and its in-process retry backoff) is awaited through `StepInterrupts.guard`
   (or, for the function, in `Context._invoke` between `begin` and `end`), which notes the task
   awaiting it.
2. `StepInterrupts.interrupt` records why and cancels those tasks. An ``async`` step sees
   `asyncio.CancelledError` at the await it is in, so its ``finally`` blocks and context
   managers run. A plain ``def`` step runs in a thread, which cannot be interrupted: the task
   stops awaiting the thread's future, so the thread is abandoned and its late result is
   discarded, never journaled.
3. `guard` turns that cancellation into the interrupt's reason (`CancelRun`, `BudgetExceeded`,
   or a budget `Suspend`) through the context's `stop`, so the run ends the way the reason
   says. A cancellation that is not an interrupt (the worker shutting down) passes unchanged,
   and a step that swallows the cancellation and returns still stops the run.

An interrupt happens once per run execution: a second one would cancel the steps' cleanup.

A cancel sent from another process reaches the run's context through `watch_cancels`, which
the worker (and `App.run`) runs beside the heartbeat: one cheap read of the held runs' cancel
requests every `CANCEL_WATCH` seconds, only while runs are held.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Protocol

from tether.store.base import Store

log = logging.getLogger("tether.engine")

CANCEL_WATCH = 0.5
"""Seconds between two looks for cancel requests among the runs a process holds."""


class _Cancellable(Protocol):
    def request_cancel(self) -> None: ...


async def watch_cancels(
    store: Store, owner: str, live: Mapping[str, _Cancellable], holding: Callable[[], bool],
    *, first: float = CANCEL_WATCH,
) -> None:
    """Forever: every `CANCEL_WATCH` seconds while `holding()` (the first time after `first`),
    ask the store which runs leased by `owner` have a cancel request and cancel their live
    contexts (cancel this task to stop). The heartbeat notices cancels too, but only every
    third of the lease."""
    wait = first
    while True:
        await asyncio.sleep(wait)
        wait = CANCEL_WATCH
        if not holding():
            continue
        try:
            cancelled = await store.cancel_requests(owner)
        except Exception as exc:
            log.debug("%s: cancel watch failed (%s)", owner, exc)
            continue
        _request_cancels(live, cancelled)


def _request_cancels(live: Mapping[str, _Cancellable], run_ids: Collection[str]) -> None:
    # Its own frame: a loop variable of the long-lived watch would keep the last cancelled
    # run's Context (its journal, its workflow's frames) alive after the run ended.
    for run_id in run_ids:
        ctx = live.get(run_id)
        if ctx is not None:
            ctx.request_cancel()


def _weakly(
    stop: Callable[[BaseException], BaseException],
) -> Callable[[BaseException], BaseException]:
    """`stop` without a strong reference to the object it is bound to. The context owns its
    `StepInterrupts`; holding the context's bound method back would make every run's context
    (its journal, its workflow's frames) a reference cycle, kept in memory after the run ended
    until the garbage collector's next full pass — hundreds of finished runs' journals on a busy
    worker. The context outlives every call (it owns this object), so the reference is live."""
    if not inspect.ismethod(stop):
        return stop
    ref = weakref.WeakMethod(stop)

    def call(signal: BaseException) -> BaseException:
        bound = ref()
        assert bound is not None, "a run's step interrupts outlived its context"
        return bound(signal)

    return call


class StepInterrupts:
    """The tasks running one run's steps, and why they were interrupted (once they were)."""

    def __init__(self, stop: Callable[[BaseException], BaseException]) -> None:
        self._stop = _weakly(stop)
        """The context's `_stop`: records the signal that stops the run, returns the first."""
        self._tasks: dict[int, asyncio.Task[Any]] = {}
        self.reason: BaseException | None = None
        """Why the steps were interrupted; later steps stop at once with it."""

    def interrupt(self, reason: BaseException) -> None:
        """Cancel the steps running now (safe to call from any thread)."""
        if self.reason is not None:
            return
        self.reason = reason
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for task in list(self._tasks.values()):
            loop = task.get_loop()
            if loop is running:
                task.cancel()
            else:  # app.cancel() from another thread than the worker's loop
                loop.call_soon_threadsafe(task.cancel)

    def begin(self, seq: int) -> asyncio.Task[Any] | None:
        """What `guard` does before awaiting, for a caller that awaits the step's work in its
        own frame (`Context._invoke`: one coroutine less per step): note the task running step
        `seq`, or raise at once when the run was interrupted already. Pair with `end`; a
        `CancelledError` goes through `cancelled`, a result through `returned`."""
        if self.reason is not None:
            raise self._stop(self.reason)
        task = asyncio.current_task()
        if task is not None:
            self._tasks[seq] = task
        return task

    def returned(self, task: asyncio.Task[Any] | None) -> None:
        """The step returned: if it swallowed our cancellation, the run still stops."""
        if task is not None and self.reason is not None and task.cancelling():
            task.uncancel()
            raise self._stop(self.reason)

    def cancelled(self, task: asyncio.Task[Any] | None) -> BaseException | None:
        """The step was cancelled: the interrupt's reason to raise instead (``None``: not an
        interrupt, let the cancellation pass)."""
        if self.reason is None or task is None:
            return None
        task.uncancel()
        return self._stop(self.reason)

    def end(self, seq: int) -> None:
        self._tasks.pop(seq, None)

    async def guard(self, seq: int, work: Awaitable[Any]) -> Any:
        """Await the work of step `seq` so that an interrupt stops it (see the module doc)."""
        task = asyncio.current_task()
        if self.reason is not None or task is None:
            if inspect.iscoroutine(work):
                work.close()
            if self.reason is not None:
                raise self._stop(self.reason)
            return await work  # pragma: no cover - a step always runs in a task
        self._tasks[seq] = task
        try:
            result = await work
            if self.reason is not None and task.cancelling():
                # The step swallowed our cancellation and returned: the run still stops.
                task.uncancel()
                raise self._stop(self.reason)
            return result
        except asyncio.CancelledError:
            if self.reason is None:
                raise
            task.uncancel()
            raise self._stop(self.reason) from None
        finally:
            self._tasks.pop(seq, None)
