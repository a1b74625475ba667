"""How the execution of a run stops, as the executor sees it: a cancel requested from outside
(`request_cancel`), a suspension that workflow code swallowed (`check_returned`), and steps of
other branches still in flight when one branch stops the run (`settle`, `drain`).

`Context` inherits these from `StopControl`; `_Stoppable` names what they use of it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from tether.engine.control import CancelRun, Suspend
from tether.engine.interrupts import StepInterrupts
from tether.errors import UserError


class _Stoppable(Protocol):
    """What stopping uses of the `Context`: the operations running now, the signal stopping
    the run, and the buffered values to flush."""

    fatal: BaseException | None
    interrupted: list[dict[str, Any]]
    _running: dict[int, dict[str, Any]]
    _inflight: set[asyncio.Future[None]]
    _stopping: BaseException | None
    _cancel_requested: bool
    _interrupts: StepInterrupts

    @property
    def run_id(self) -> str: ...

    @property
    def workflow(self) -> str: ...

    async def _flush_values(self) -> None: ...


class StopControl(_Stoppable):
    """The executor's hooks for ending an execution of the run."""

    def request_cancel(self) -> None:
        """End the run as cancelled: steps running now are interrupted (an async step's task
        is cancelled, so its ``finally`` blocks run; a thread step is abandoned and its late
        result discarded) and the next operation stops the run. Safe to call from any thread."""
        if self._cancel_requested:
            return  # a second cancel must not interrupt the steps' cleanup again
        self._cancel_requested = True
        self.interrupted = [
            {"seq": op["seq"], "name": op["name"], "kind": op["kind"]}
            for _, op in sorted(self._running.items())
        ]
        self._interrupts.interrupt(CancelRun())

    def check_returned(self) -> None:
        """Called when the workflow function returned: an operation that stopped the run (a
        suspension, a cancel, a lost lease) still applies even if workflow code swallowed it.

        A swallowed suspension is an error, not a success: ``asyncio.wait`` (or
        ``gather(return_exceptions=True)``, a task left unawaited, ``except BaseException``) hid
        it, and the workflow returned without the
        outcome it was waiting for."""
        stopping = self._stopping
        if stopping is None:
            return
        if isinstance(stopping, Suspend):
            names = stopping.waiting_for
            if isinstance(names, str):
                what = f"signal {names!r}"
            elif names:
                what = "one of the signals " + ", ".join(repr(n) for n in names)
            else:
                what = "a durable timer"
            error = UserError(
                f"run {self.run_id}: workflow {self.workflow!r} returned while one of its "
                f"operations had suspended the run (waiting for {what}); asyncio.wait, "
                "gather(return_exceptions=True), a task left unawaited or `except "
                "BaseException` hid the suspension. Await ctx operations directly; to wait for the first of several "
                "signals use `await ctx.wait_for_any([...])`"
            )
            self.fatal = error
            raise error
        raise stopping

    @property
    def stopping(self) -> BaseException | None:
        """The control-flow signal that is stopping the run, once one was raised."""
        return self._stopping

    async def settle(self) -> None:
        """Wait for steps still running in other branches to journal their outcome (called
        when one branch suspended the run), then flush buffered values."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        await self._flush_values()

    async def flush(self) -> None:
        await self._flush_values()

    async def drain(self) -> None:
        """Wait for steps still running in other branches to journal their outcome (called
        when the run is about to fail): they were sent, so their usage belongs in the ledger
        that budgets and spend limits read."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
