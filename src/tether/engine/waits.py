"""The durable waits of a workflow: `sleep`, signal waits (`wait_for_signal`, `wait_for_any`)
and child runs (`run_child`, `start_child`, `child_result`).

A wait is one journaled operation that holds no worker: when what it waits for is not there,
the wait's entry is journaled ``waiting`` and the run is suspended with the time it should wake
(at the latest when ``max_duration`` runs out); the store wakes it early when a signal arrives.
A signal is taken from the run's mailbox and journaled in one transaction (`consume_signal`),
so a replay returns the recorded payload and never takes a second one.

`Context` inherits these operations from `DurableWaits`; `_Journaled` names what they use of it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, Protocol, cast

from tether.engine.budget import ZERO, Budget, Usage
from tether.engine.children import (
    CHILD_KIND,
    CHILD_RECHECK,
    CHILD_SIGNAL,
    CHILD_WAIT_KIND,
    ChildRun,
    child_run_id,
    ended_child,
    outcome_result,
    outcome_usage,
    remaining_budget,
)
from tether.engine.control import DropRun, Suspend
from tether.engine.retry import NO_RETRY, Retry
from tether.engine.serde import Decoder
from tether.errors import SignalTimeout, StoreUnavailable, UserError
from tether.store.base import WAIT_SEPARATOR, NewRun, RunRecord, SpendWindow, StepRecord, Store

_identity = Decoder(None)


class _Journaled(Protocol):
    """What the waits use of the `Context` they are part of: its run, journal and ledger, and
    the operations every journaled operation shares (sequence numbers, replay, fenced writes,
    stopping the run, the duration budget, the event stream, the step a child is started in)."""

    app: Any
    _run: RunRecord
    _token: int
    _store: Store
    _journal: dict[int, StepRecord]
    _budget: Budget | None
    _usage: Usage
    _pending_values: list[StepRecord]
    children: list[str]

    @property
    def run_id(self) -> str: ...

    @property
    def labels(self) -> dict[str, str]: ...

    def _next_seq(self) -> int: ...

    def _check_live(self) -> None: ...

    def _check_duration(self) -> None: ...

    def _wake_within_budget(self, wake_at: float | None) -> float | None: ...

    def _stop(self, signal: BaseException) -> BaseException: ...

    def _replayed(self, seq: int, name: str, kind: str) -> StepRecord | None: ...

    async def _flush_values(self) -> None: ...

    async def _write(self, rec: StepRecord, events: bool = False) -> None: ...

    def _emit_step(self, kind: str, rec: StepRecord, *, provisional: bool = False) -> None: ...

    async def _execute_step(
        self,
        seq: int,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: Retry,
        timeout: float | None,
        is_async: bool,
        decode: Decoder,
        kind: str,
        meta: dict[str, Any] | None,
        estimate: Usage,
        budgets: tuple[tuple[Budget, Usage, str], ...],
        record_input: Any,
        windows: tuple[SpendWindow, ...] = (),
    ) -> Any: ...


class DurableWaits(_Journaled):
    """Timers, signal waits and child runs: the operations of `Context` that suspend a run."""

    def sleep(self, duration: timedelta | float) -> Coroutine[Any, Any, None]:
        """A durable timer: the run is suspended and the worker released until it is due."""
        return self._sleep(self._next_seq(), wait_seconds(duration, "ctx.sleep()"))

    def wait_for_signal(
        self, name: str, *, timeout: timedelta | float | None = None
    ) -> Coroutine[Any, Any, Any]:
        """Wait for the next signal `name` (kept if it arrived earlier) and return its payload.
        The run holds no worker while waiting. Raises `SignalTimeout` after `timeout`."""
        seconds = None if timeout is None else wait_seconds(timeout, "ctx.wait_for_signal(timeout=)")
        return self._wait_for_signal(self._next_seq(), name, seconds)

    def wait_for_any(
        self, names: Sequence[str], *, timeout: timedelta | float | None = None
    ) -> Coroutine[Any, Any, tuple[str, Any]]:
        """Wait for the first of several signals and return ``(name, payload)``.

        One journaled operation: it takes the oldest unconsumed signal among `names` (one that
        arrived earlier counts), so two racing signals resolve the same way on every worker
        and the other stays in the mailbox for a later wait; a replay returns the recorded
        winner. The run holds no worker while waiting and wakes on any of the names. Raises
        `SignalTimeout` after `timeout`. Use this rather than ``asyncio.wait`` over
        `wait_for_signal` calls, which cannot work (see docs/concepts.md)."""
        wanted = signal_names(names)
        seconds = None if timeout is None else wait_seconds(timeout, "ctx.wait_for_any(timeout=)")
        return self._wait_for_any(self._next_seq(), wanted, seconds)

    def run_child(
        self,
        workflow: str | Callable[..., Any],
        input: dict[str, Any] | None = None,
        *,
        labels: dict[str, str] | None = None,
        budget: Budget | None = None,
    ) -> Coroutine[Any, Any, Any]:
        """Run `workflow` as a child run (on any worker) and return its output; raises
        `RunFailed`/`RunRefused`/`RunCancelled` as the child ended. Journaled: a resumed
        parent never starts the child twice. The child inherits this run's labels (plus
        `labels`) and may spend at most what is left of this run's budget (tightened by
        `budget`); what it spends is charged to this run. See `tether.engine.children`."""
        start_seq, wait_seq = self._next_seq(), self._next_seq()

        async def run() -> Any:
            child = await self._start_child(start_seq, workflow, input, labels, budget)
            return await self._child_result(wait_seq, child.id)

        return run()

    def start_child(
        self,
        workflow: str | Callable[..., Any],
        input: dict[str, Any] | None = None,
        *,
        labels: dict[str, str] | None = None,
        budget: Budget | None = None,
    ) -> Coroutine[Any, Any, ChildRun]:
        """Start a child run without waiting for it (see `run_child`); await
        ``handle.result()`` later, e.g. after starting several."""
        return self._start_child(self._next_seq(), workflow, input, labels, budget)

    def child_result(self, child_id: str) -> Coroutine[Any, Any, Any]:
        """Wait for the child `child_id` (started by this run) to end: `ChildRun.result`."""
        return self._child_result(self._next_seq(), child_id)

    async def _start_child(
        self,
        seq: int,
        workflow: str | Callable[..., Any],
        input: dict[str, Any] | None,
        labels: dict[str, str] | None,
        budget: Budget | None,
    ) -> ChildRun:
        name = workflow if isinstance(workflow, str) else getattr(workflow, "__tether_workflow__", None)
        if not isinstance(name, str) or not name:
            raise UserError(
                f"ctx.run_child(): {workflow!r} is not a workflow; pass its name or an "
                "@app.workflow function"
            )
        child_id = child_run_id(self.run_id, seq)
        self.children.append(child_id)
        definition = self.app.get_workflow(name) if self.app is not None else None
        canonical: Any = definition.canonical_input(input) if definition is not None else dict(input or {})
        own = remaining_budget(self._budget, self._usage, self._run.created_at)
        limit = budget if own is None else own.merged(budget)
        new = NewRun(
            id=child_id,
            workflow=name,
            version=definition.version if definition is not None else None,
            input=canonical,
            labels={**self.labels, **(labels or {})},
            budget=limit.to_dict() if limit is not None else None,
            parent_id=self.run_id,
        )
        store = self._store

        async def create() -> str:
            # Idempotent: the id is derived from this run's, so a step run again after a
            # crash finds the child it started and starts nothing.
            await store.create_run(new)
            return child_id

        started = await self._execute_step(
            seq, name, create, (), {}, NO_RETRY, None, True, _identity, CHILD_KIND, None, ZERO,
            (), {"workflow": name, "run_id": child_id},
        )
        return ChildRun(self, str(started))

    async def _child_result(self, seq: int, child_id: str) -> Any:
        label = CHILD_SIGNAL + child_id
        self._check_live()
        rec = self._replayed(seq, label, CHILD_WAIT_KIND)
        if rec is not None and rec.status == "completed":
            return outcome_result(child_id, dict(rec.output or {}))
        self._check_duration()
        waiting = rec or StepRecord(
            run_id=self.run_id, seq=seq, name=label, kind=CHILD_WAIT_KIND, status="waiting",
            input={"run_id": child_id}, started_at=time.time(),
        )
        await self._flush_values()
        taking = replace(waiting, finished_at=time.time())
        try:
            signal = await self._store.consume_signal(self.run_id, self._token, taking)
            outcome = None if signal is None else signal.payload
            if outcome is None:
                # The signal may have been lost with the child's worker: look at the child.
                outcome = await ended_child(self._store, child_id)
                if outcome is not None:
                    await self._write(consumed(taking, outcome))
        except StoreUnavailable:
            raise self._stop(DropRun()) from None
        if outcome is not None:
            done = consumed(taking, outcome)
            self._journal[seq] = done
            self._usage = self._usage + outcome_usage(done)
            self._emit_step("signal_received", done)
            return outcome_result(child_id, dict(outcome))
        if rec is None:
            await self._write(waiting)
        self._emit_step("waiting", waiting)
        raise self._stop(Suspend(wake_at=self._wake_within_budget(time.time() + CHILD_RECHECK),
                                 waiting_for=label))

    async def _sleep(self, seq: int, seconds: float) -> None:
        self._check_live()
        rec = self._replayed(seq, "sleep", "sleep")
        if rec is not None and rec.status == "completed":
            return
        self._check_duration()
        if rec is None:
            wake = time.time() + seconds
            rec = StepRecord(
                run_id=self.run_id,
                seq=seq,
                name="sleep",
                kind="sleep",
                status="waiting",
                input={"seconds": seconds},
                started_at=time.time(),
                wake_at=wake,
            )
            await self._write(rec)
        wake = rec.wake_at or 0.0
        if time.time() < wake:
            raise self._stop(Suspend(wake_at=self._wake_within_budget(wake)))
        self._journal[seq] = done = replace(rec, status="completed", finished_at=time.time())
        self._pending_values.append(done)

    async def _wait_for_signal(self, seq: int, name: str, timeout: float | None) -> Any:
        return await self._wait(seq, name, None, timeout)

    async def _wait_for_any(
        self, seq: int, names: list[str], timeout: float | None
    ) -> tuple[str, Any]:
        outcome = await self._wait(seq, WAIT_SEPARATOR.join(names), names, timeout)
        return str(outcome["name"]), outcome.get("payload")

    async def _wait(
        self, seq: int, label: str, names: list[str] | None, timeout: float | None
    ) -> Any:
        """A signal wait: `names` ``None`` waits for the signal `label` and returns its
        payload; otherwise for the first of `names`, returning ``{"name", "payload"}``."""
        self._check_live()
        rec = self._replayed(seq, label, "signal")
        if rec is not None and rec.status == "completed":
            self._emit_step("signal_received", rec)
            return rec.output
        if rec is not None and rec.status == "failed":
            raise SignalTimeout(label, self.run_id)
        self._check_duration()
        now = time.time()
        deadline = rec.wake_at if rec is not None else (
            None if timeout is None else now + timeout)
        if rec is not None:
            waiting = rec
        else:
            waiting = StepRecord(
                run_id=self.run_id,
                seq=seq,
                name=label,
                kind="signal",
                status="waiting",
                input=(
                    {"timeout": timeout} if timeout is not None else None
                ) if names is None else {"names": names, "timeout": timeout},
                started_at=now,
                wake_at=deadline,
            )
        await self._flush_values()
        taking = replace(waiting, finished_at=time.time())
        try:
            if names is None:
                signal = await self._store.consume_signal(self.run_id, self._token, taking)
                output: Any = None if signal is None else signal.payload
            else:
                signal = await self._store.consume_first_signal(
                    self.run_id, self._token, taking, names
                )
                output = None if signal is None else {"name": signal.name, "payload": signal.payload}
        except StoreUnavailable:
            raise self._stop(DropRun()) from None
        if signal is not None:
            self._journal[seq] = received = consumed(taking, output)
            self._emit_step("signal_received", received)
            return output
        if deadline is not None and time.time() >= deadline:
            await self._write(
                replace(
                    waiting,
                    status="failed",
                    finished_at=time.time(),
                    error={"type": "SignalTimeout", "message": f"no signal {label!r} in time"},
                )
            )
            raise SignalTimeout(label, self.run_id)
        if rec is None:
            await self._write(waiting)
        self._emit_step("waiting", waiting)
        raise self._stop(
            Suspend(
                wake_at=self._wake_within_budget(deadline),
                waiting_for=label if names is None else tuple(names),
            )
        )




MAX_WAIT = 100 * 365 * 86400.0
"""The longest timer or signal timeout, in seconds (a century): a wake-up time much further
away cannot be shown as a date, and `tether runs` would fail on the run."""


def wait_seconds(value: object, what: str) -> float:
    """The seconds of a timer or a wait's timeout, given as a number or a `timedelta`: a
    finite number up to `MAX_WAIT` (a negative one is due at once)."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (isinstance(seconds, bool) or not isinstance(seconds, int | float)
            or not math.isfinite(seconds) or seconds > MAX_WAIT):
        hint = "; without a timeout it waits for ever" if "timeout" in what else ""
        raise UserError(f"{what} takes seconds (a finite number up to a century) or a timedelta, "
                        f"got {value!r}{hint}")
    return float(seconds)


def signal_names(names: object) -> list[str]:
    """Validate the names of a `wait_for_any` (at call time, so misuse fails at once); the
    caller's code is untyped at run time, so check what the annotation only promises."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise UserError(
            f"ctx.wait_for_any() takes a list of signal names, got {names!r}; "
            "for one name use ctx.wait_for_signal(name)"
        )
    wanted: list[str] = []
    for name in cast(Sequence[object], names):
        if not isinstance(name, str) or not name:
            raise UserError(f"ctx.wait_for_any(): signal names are non-empty strings, got {name!r}")
        if WAIT_SEPARATOR in name:
            raise UserError(
                f"ctx.wait_for_any(): signal name {name!r} contains {WAIT_SEPARATOR!r}, which "
                "separates the names of a wait; rename the signal"
            )
        if name.startswith("tether."):
            raise UserError(
                f"ctx.wait_for_any(): signal names starting with 'tether.' are reserved; "
                f"rename {name!r}"
            )
        if name not in wanted:
            wanted.append(name)
    if not wanted:
        raise UserError("ctx.wait_for_any() needs at least one signal name")
    return wanted


def consumed(taking: StepRecord, output: Any) -> StepRecord:
    """A wait's entry as the store journals it when a signal is consumed (`consume_signal`)."""
    return StepRecord(
        run_id=taking.run_id, seq=taking.seq, name=taking.name, kind=taking.kind,
        status="completed", input=taking.input, output=output, attempts=taking.attempts,
        started_at=taking.started_at, finished_at=taking.finished_at, meta=taking.meta,
    )


