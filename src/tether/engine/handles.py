"""Handles to runs held by clients: `RunHandle`, its event stream, and the portal that runs the
synchronous API's coroutines on one background event loop per `Runtime`."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, Protocol, TypeVar

from tether.engine.events import RunEvent, follow_events, read_events, read_events_or_end
from tether.engine.records import RunInfo
from tether.engine.worker import quiet_control_flow
from tether.errors import UnknownRun, UserError, error_from_record
from tether.store.base import FINISHED_STATUSES, Store

T = TypeVar("T")


class Portal:
    """A background event loop that runs the synchronous API's coroutines."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._ensure()
        if threading.current_thread() is self._thread:
            coro.close()
            raise UserError(
                "a synchronous tether call was made from inside a workflow or step; "
                "use the async twin (e.g. `await app.start_async(...)`)"
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                quiet_control_flow(loop)
                ready = threading.Event()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    ready.set()
                    loop.run_forever()

                self._thread = threading.Thread(target=main, name="tether-portal", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop


class HandleHost(Protocol):
    """What a run handle uses of the `Runtime` that made it (named by this protocol, not
    imported: the runtime imports this module to hand out handles)."""

    @property
    def store(self) -> Store: ...

    @property
    def portal(self) -> Portal: ...

    def get_run(self, run_id: str) -> RunInfo: ...


class RunHandle:
    """A reference to a run; cheap to create, holds no connection."""

    def __init__(self, app: HandleHost, run_id: str) -> None:
        self.app = app
        self.id = run_id

    def __repr__(self) -> str:
        return f"RunHandle({self.id!r})"

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the run to finish and return its output. Raises `RunFailed` (or
        `BudgetExceeded`…), `RunRefused`, `RunCancelled`, or `TimeoutError`."""
        return self.app.portal.run(self.result_async(timeout))

    async def result_async(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.002
        while True:
            run = await self.app.store.get_run(self.id)
            if run is None:
                raise UnknownRun(self.id)
            if run.status in FINISHED_STATUSES:
                if run.status == "succeeded":
                    return run.output
                raise error_from_record(run.id, run.status, run.error)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"run {self.id} did not finish within {timeout}s (status {run.status}"
                    + (f", waiting for signal {run.waiting_for!r}" if run.waiting_for else "")
                    + ")"
                )
            pause = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(pause)
            delay = min(delay * 1.5, 0.2)

    def info(self) -> RunInfo:
        return self.app.get_run(self.id)

    def events(self, *, after: int = 0, follow: bool = True) -> RunEventStream:
        """The run's event stream from position `after`: ``for event in handle.events()`` or
        ``async for event in handle.events()``. With `follow` it waits for new events until
        the run's ``finished`` event; without, it yields what is there and stops."""
        return RunEventStream(self.app, self.id, after=after, follow=follow)

    @property
    def status(self) -> str:
        return self.info().status


class RunEventStream:
    """A run's events, as a sync or an async iterator (`RunHandle.events`)."""

    def __init__(self, app: HandleHost, run_id: str, *, after: int, follow: bool) -> None:
        self._app = app
        self._run_id = run_id
        self._after = after
        self._follow = follow

    def __aiter__(self) -> AsyncIterator[RunEvent]:
        if self._follow:
            return follow_events(self._app.store, self._run_id, after=self._after)
        return self._once()

    async def _once(self) -> AsyncIterator[RunEvent]:
        for event in await read_events(self._app.store, self._run_id, after=self._after):
            yield event

    def __iter__(self) -> Iterator[RunEvent]:
        after = self._after
        idle = 0
        while True:
            events, past_end = self._app.portal.run(read_events_or_end(
                self._app.store, self._run_id, after=after, check_finished=idle % 20 == 0))
            if past_end:
                return
            for event in events:
                after = event.id
                yield event
                if event.kind == "finished":
                    return
            if not self._follow:
                return
            idle = 1 if events else idle + 1
            if not events:
                time.sleep(0.01)
