"""The workflow context: journal replay and the execution of every `ctx` operation.

Each operation (step, sleep, signal wait, `now`, `uuid`) takes the next sequence number *when it
is called* — not when it is awaited — so ``asyncio.gather`` of steps numbers them in argument
order on every execution. When the journal already holds that number, the recorded outcome is
returned (or the recorded failure re-raised) without running anything; a recorded entry with a
different name fails the run with `NonDeterminismError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import time
import traceback
import uuid as uuid_module
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from concurrent.futures import Executor
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

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
from tether.engine.control import CancelRun, DropRun, Suspend
from tether.engine.interrupts import StepInterrupts
from tether.engine.lease import Leases
from tether.engine.ledger import OVERSHOOT, Ledger, Reservation, window_exceeded
from tether.engine.registry import StepDef, make_step
from tether.engine.retry import NO_RETRY, Retry
from tether.engine.serde import Decoder, to_jsonable
from tether.errors import (
    BudgetExceeded,
    NonDeterminismError,
    SignalTimeout,
    StepFailed,
    StoreUnavailable,
    UserError,
)
from tether.store.base import WAIT_SEPARATOR, NewRun, RunRecord, SpendWindow, StepRecord, Store
from tether.store.events_sql import step_event_data

_current: ContextVar[weakref.ref[Context] | None] = ContextVar("tether_context", default=None)
"""A *weak* reference: timers, callbacks and tasks started inside a run copy the contextvars
context and may outlive the run (a cancelled timer stays in the event loop until it falls due);
they must not keep its Context — journal, workflow frames — alive."""
_current_step: ContextVar[StepContext | None] = ContextVar("tether_step", default=None)
_branch: ContextVar[_BranchSeq | None] = ContextVar("tether_branch", default=None)
_identity = Decoder(None)


def current_context() -> Context | None:
    """The workflow context of the calling code, or ``None`` outside a workflow."""
    ref = _current.get()
    return None if ref is None else ref()


@contextlib.contextmanager
def bound(ctx: Context) -> Generator[Context, None, None]:
    """Make `ctx` the current workflow context for the calling task (the executor's job)."""
    token = _current.set(weakref.ref(ctx))
    try:
        yield ctx
    finally:
        _current.reset(token)


def current_step() -> StepContext:
    """The step being executed (run id, sequence number, attempt, idempotency key)."""
    step = _current_step.get()
    if step is None:
        raise UserError("tether.current_step() was called outside a running step")
    return step


@dataclass(slots=True)
class StepContext:
    """What a running step may know about itself, and where it reports what it spent."""

    run_id: str
    seq: int
    name: str
    attempt: int
    labels: dict[str, str]
    usage: Usage = ZERO
    meta: dict[str, Any] = field(default_factory=dict[str, Any])

    @property
    def idempotency_key(self) -> str:
        """Stable across retries and worker takeovers: hand it to the outside system."""
        return f"{self.run_id}:{self.seq}"

    def add_usage(self, usage: Usage) -> None:
        """Charge what this step spent to the run's ledger (journaled with the outcome)."""
        self.usage = self.usage + usage

    def set_meta(self, **attributes: Any) -> None:
        """Attach attributes (model, fingerprint…) journaled with the step's outcome."""
        self.meta.update(attributes)


def error_record(exc: BaseException, *, timeout: float | None = None) -> dict[str, Any]:
    message = str(exc)
    if isinstance(exc, TimeoutError) and not message and timeout is not None:
        message = f"timed out after {timeout}s"
    record: dict[str, Any] = {"type": type(exc).__name__, "message": message or repr(exc)}
    tb = "".join(traceback.format_exception(exc, limit=-8))
    record["traceback"] = tb[-4000:]
    return record


class Context:
    """Handed to a workflow as its first argument; every method is journaled."""

    def __init__(
        self,
        *,
        run: RunRecord,
        token: int,
        store: Store,
        journal: list[StepRecord],
        budget: Budget | None,
        executor: Executor | None = None,
        app: Any = None,
        replay_only: bool = False,
        leases: Leases | None = None,
    ) -> None:
        self.app = app
        self._leases = leases
        self._replay_only = replay_only
        """The `tether.App` executing this run (upper layers read their configuration from it)."""
        self._run = run
        self._token = token
        self._store = store
        self._journal = {rec.seq: rec for rec in journal}
        self._budget = budget
        self._executor = executor
        self._seq = 0
        self._usage = ZERO
        self._ledger = Ledger(store, run.id, token)
        for rec in journal:
            if rec.usage:
                self._usage = self._usage + Usage.from_dict(rec.usage)
            if rec.kind == CHILD_WAIT_KIND:
                self._usage = self._usage + outcome_usage(rec)
        self._pending_values: list[StepRecord] = []
        self._inflight: set[asyncio.Future[None]] = set()
        self._running: dict[int, dict[str, Any]] = {}
        self._stopping: BaseException | None = None
        self._cancel_requested = False
        self._interrupts = StepInterrupts(self._stop)
        self.interrupted: list[dict[str, Any]] = []
        """The steps a cancel cut short (``seq``, ``name``, ``kind``): none is journaled, so
        the run's error names them."""
        self.fatal: BaseException | None = None
        """A failure the run must end with even if workflow code caught it."""
        self._events = None if replay_only else getattr(app, "run_events", None)
        # Steps' own events come from their journal rows on such a store (`write_step`'s
        # ``events``): the step's write is its events' only cost.
        self._derived = self._events is not None and getattr(store, "derives_step_events", False)
        if journal:
            self.emit_event("resumed", data={"fencing": token},
                            key=f"{run.id}:resumed:{token}")
        else:
            self.emit_event("run_started", data={"workflow": run.workflow},
                            key=f"{run.id}:started")

    # --- what the workflow may read ---------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self._run.id

    @property
    def workflow(self) -> str:
        return self._run.workflow

    @property
    def labels(self) -> dict[str, str]:
        return self._run.labels

    @property
    def input(self) -> Any:
        return self._run.input

    @property
    def budget(self) -> Budget | None:
        return self._budget

    @property
    def sequence(self) -> int:
        """The last sequence number handed out."""
        return self._seq

    def next_sequence(self) -> int:
        """The sequence number the next operation will take (without taking it): upper layers
        use it to skip work whose outcome the journal already holds."""
        slot = _branch.get()
        if slot is not None and slot.ctx_id == id(self):
            return slot.base + slot.count * slot.width + slot.index + 1
        return self._seq + 1

    @property
    def spent(self) -> Usage:
        """Everything journaled so far: the budget ledger."""
        return self._usage

    @property
    def journal(self) -> dict[int, StepRecord]:
        """The entries recorded so far (read-only view for upper layers)."""
        return self._journal

    def written_journal(self) -> list[StepRecord]:
        """The journal as the store holds it once the run has ended: every entry, by seq."""
        return [self._journal[seq] for seq in sorted(self._journal)]

    def usage_where(self, predicate: Callable[[dict[str, Any]], bool]) -> Usage:
        """Usage of the journaled entries whose `meta` matches (e.g. one agent node)."""
        total = ZERO
        for rec in self._journal.values():
            if rec.usage and predicate(rec.meta or {}):
                total = total + Usage.from_dict(rec.usage)
        return total

    # --- operations ------------------------------------------------------------------------------

    def step(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """Run `fn` as a journaled step (a function decorated with `@app.step` keeps its
        retry and timeout; any other callable runs once, named by its function name)."""
        definition = getattr(fn, "__tether_step__", None)
        if definition is None:
            definition = make_step(fn, name=None, retry=None, timeout=None)
        return self.call_step(definition, args, kwargs)

    def call_step(
        self, definition: StepDef, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Awaitable[Any]:
        return self.run_step(
            definition.name,
            definition.fn,
            args,
            kwargs,
            retry=definition.retry,
            timeout=definition.timeout,
            is_async=definition.is_async,
            decode=definition.decode,
        )

    def run_step(
        self,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        retry: Retry | None = None,
        timeout: float | None = None,
        is_async: bool | None = None,
        decode: Decoder = _identity,
        kind: str = "step",
        meta: dict[str, Any] | None = None,
        estimate: Usage = ZERO,
        budgets: tuple[tuple[Budget, Usage, str], ...] = (),
        record_input: Any = None,
        windows: tuple[SpendWindow, ...] = (),
    ) -> Coroutine[Any, Any, Any]:
        """The general form of a step, for upper layers (agents record model and tool calls
        with it). `estimate` is the step's worst case: it is reserved against the run's budget,
        the extra ``(budget, spent, scope)`` `budgets` (e.g. an agent node's) and the spend
        `windows` before the step runs, and released once its outcome is journaled (see
        `tether.engine.ledger`)."""
        seq = self._next_seq()
        if is_async is None:
            is_async = inspect.iscoroutinefunction(fn)
        return self._execute_step(
            seq,
            name,
            fn,
            args,
            kwargs or {},
            retry or NO_RETRY,
            timeout,
            is_async,
            decode,
            kind,
            meta,
            estimate,
            budgets,
            record_input,
            windows,
        )

    async def branches(self, calls: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
        """Run `calls` concurrently, each numbering its operations in its own interleaved
        sequence space (branch ``i`` of ``n`` takes ``base + k*n + i + 1``), so a replay is
        deterministic whatever order multi-step branches finish in — a plain ``asyncio.gather``
        is only deterministic for one operation per branch. Branches do not nest."""
        if _branch.get() is not None:
            raise UserError("ctx.branches() cannot be nested inside another branch")
        base, width = self._seq, len(calls)
        slots = [_BranchSeq(id(self), base, width, i) for i in range(width)]

        async def run(slot: _BranchSeq, call: Callable[[], Awaitable[Any]]) -> Any:
            _branch.set(slot)  # this task's own copy of the context
            return await call()

        try:
            return list(await asyncio.gather(*(run(s, c) for s, c in zip(slots, calls, strict=True))))
        finally:
            self._seq = base + max((s.count for s in slots), default=0) * width

    def sleep(self, duration: timedelta | float) -> Coroutine[Any, Any, None]:
        """A durable timer: the run is suspended and the worker released until it is due."""
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
        return self._sleep(self._next_seq(), seconds)

    def wait_for_signal(
        self, name: str, *, timeout: timedelta | float | None = None
    ) -> Coroutine[Any, Any, Any]:
        """Wait for the next signal `name` (kept if it arrived earlier) and return its payload.
        The run holds no worker while waiting. Raises `SignalTimeout` after `timeout`."""
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
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
        wanted = _signal_names(names)
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        return self._wait_for_any(self._next_seq(), wanted, seconds)

    def now(self) -> datetime:
        """The current time, recorded: a replay returns the same instant."""
        seq = self._next_seq()
        rec = self._replayed(seq, "now", "value")
        if rec is None:
            value = time.time()
            self._record_value(seq, "now", value)
        else:
            value = float(rec.output)
        return datetime.fromtimestamp(value, UTC)

    def uuid(self) -> uuid_module.UUID:
        """A random UUID, recorded: a replay returns the same one."""
        seq = self._next_seq()
        rec = self._replayed(seq, "uuid", "value")
        if rec is None:
            value = str(uuid_module.uuid4())
            self._record_value(seq, "uuid", value)
        else:
            value = str(rec.output)
        return uuid_module.UUID(value)

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
        taking = _replace(waiting, finished_at=time.time())
        try:
            signal = await self._store.consume_signal(self.run_id, self._token, taking)
            outcome = None if signal is None else signal.payload
            if outcome is None:
                # The signal may have been lost with the child's worker: look at the child.
                outcome = await ended_child(self._store, child_id)
                if outcome is not None:
                    await self._write(_consumed(taking, outcome))
        except StoreUnavailable:
            raise self._stop(DropRun()) from None
        if outcome is not None:
            done = _consumed(taking, outcome)
            self._journal[seq] = done
            self._usage = self._usage + outcome_usage(done)
            self._emit_step("signal_received", done)
            return outcome_result(child_id, dict(outcome))
        if rec is None:
            await self._write(waiting)
        self._emit_step("waiting", waiting)
        raise self._stop(Suspend(wake_at=self._wake_within_budget(time.time() + CHILD_RECHECK),
                                 waiting_for=label))

    def emit_event(
        self, kind: str, *, seq: int | None = None, data: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> None:
        """Add an event to the run's stream (`tether.engine.events`). Give events about the
        journal a `key` derived from the run and sequence number: a replay emits them again
        and the stream keeps them once."""
        if self._events is not None:
            self._events.emit(self.run_id, kind, seq=seq, data=data, key=key)

    def _emit_step(self, kind: str, rec: StepRecord, *, provisional: bool = False) -> None:
        if self._events is None:
            return
        what = kind.removeprefix("step_")
        if kind == "step_retrying":
            what = f"retrying:{rec.attempts}"
        data = step_event_data(rec.name, rec.kind, rec.attempts, rec.meta, rec.error)
        self._events.emit(self.run_id, kind, seq=rec.seq, data=data,
                          key=f"{self.run_id}:{rec.seq}:{what}", provisional=provisional)

    def _step_events(self, seq: int) -> int:
        """What the step's final journal row stands for in the event stream (`Store.write_step`):
        0 nothing (its events are appended), 1 its outcome, 2 its start too (the start event,
        still held back, is withdrawn)."""
        if not self._derived:
            return 0
        assert self._events is not None
        return 2 if self._events.withdraw(f"{self.run_id}:{seq}:started") else 1

    # --- executor hooks --------------------------------------------------------------------------

    def progress(self) -> dict[str, Any] | None:
        """The oldest operation executing right now (for the heartbeat), or ``None``."""
        if not self._running:
            return None
        return self._running[min(self._running)]

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

    # --- internals -------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        slot = _branch.get()
        if slot is not None and slot.ctx_id == id(self):
            slot.count += 1
            return slot.base + (slot.count - 1) * slot.width + slot.index + 1
        self._seq += 1
        return self._seq

    def _check_live(self) -> None:
        if self._stopping is not None:
            raise self._stopping
        if self._cancel_requested:
            raise CancelRun()

    def _duration_deadline(self) -> float | None:
        """When the run's ``max_duration`` runs out (epoch seconds), if it has one."""
        limit = self._budget.duration_seconds if self._budget is not None else None
        return None if limit is None else self._run.created_at + limit

    def _check_duration(self) -> None:
        """Check only the run's ``max_duration`` (waits and sleeps spend time, nothing else)."""
        if self._budget is None or self._budget.duration_seconds is None:
            return
        only = Budget(max_duration=self._budget.duration_seconds, on_exceed=self._budget.on_exceed)
        self._check_one(only, ZERO, 0, time.time() - self._run.created_at, ZERO, "run")

    def _duration_ran_out(self) -> None:
        try:
            self._check_duration()
        except BaseException as exc:  # BudgetExceeded, or Suspend when on_exceed="suspend"
            self._interrupts.interrupt(exc)

    def _wake_within_budget(self, wake_at: float | None) -> float | None:
        """A suspension wakes at the latest when ``max_duration`` runs out, so the budget
        fails (or parks) the run then rather than when the wait would have ended."""
        deadline = self._duration_deadline()
        if deadline is None:
            return wake_at
        deadline += 0.001  # strictly past the limit when claimed: the check then fires
        return deadline if wake_at is None else min(wake_at, deadline)

    def _stop(self, signal: BaseException) -> BaseException:
        if self._stopping is None:
            self._stopping = signal
            if isinstance(signal, Suspend):
                self.emit_event("suspended", data={"wake_at": signal.wake_at,
                                                   "waiting_for": signal.waiting_for},
                                key=f"{self.run_id}:suspended:{self._token}")
        return signal

    def _replayed(self, seq: int, name: str, kind: str) -> StepRecord | None:
        rec = self._journal.get(seq)
        unsettled = rec is None or rec.status not in ("completed", "failed")
        if self._replay_only and unsettled and (rec is None or (rec.name, rec.kind) == (name, kind)):
            # Replaying a recorded journal: the code reached past what it settled; stop here.
            raise self._stop(ReplayEnd(seq, name))
        if rec is not None and (rec.name != name or rec.kind != kind):
            error = NonDeterminismError(
                run_id=self.run_id,
                seq=seq,
                expected=f"{rec.kind} {rec.name!r}",
                found=f"{kind} {name!r}",
            )
            self.fatal = error
            raise error
        return rec

    def _record_value(self, seq: int, name: str, value: Any) -> None:
        rec = StepRecord(
            run_id=self.run_id,
            seq=seq,
            name=name,
            kind="value",
            status="completed",
            output=value,
            attempts=1,
            started_at=time.time(),
            finished_at=time.time(),
        )
        self._journal[seq] = rec
        self._pending_values.append(rec)

    async def _flush_values(self) -> None:
        while self._pending_values:
            rec = self._pending_values.pop(0)
            await self._write_fenced(rec)

    async def _write_fenced(self, rec: StepRecord, events: int = 0) -> None:
        if self._events is not None:
            self._events.join_write()  # events ride along in the journal write's transaction
        try:
            if events:
                written = await self._store.write_step(self.run_id, self._token, rec,
                                                       events=events)
            else:
                written = await self._store.write_step(self.run_id, self._token, rec)
        except StoreUnavailable:
            # Not the workflow's failure: leave the run for takeover once the store is back.
            raise self._stop(DropRun()) from None
        if not written:
            raise self._stop(await self._lost())

    async def _write(self, rec: StepRecord, events: int = 0) -> None:
        await self._flush_values()
        await self._write_fenced(rec, events)
        previous = self._journal.get(rec.seq)
        if previous is not None and previous.usage:
            self._usage = Usage(
                **{
                    k: getattr(self._usage, k) - getattr(Usage.from_dict(previous.usage), k)
                    for k in Usage.__dataclass_fields__
                }
            )
        self._journal[rec.seq] = rec
        if rec.usage:
            self._usage = self._usage + Usage.from_dict(rec.usage)

    async def _check_lease(self) -> None:
        """A fenced start: no step body begins after the run's lease may have been taken over
        (a paused process woken late, renewals lost to a store outage) unless a renewal now
        confirms it is still ours."""
        if self._leases is not None and not await self._leases.ensure(self.run_id):
            raise self._stop(DropRun())

    async def _lost(self) -> BaseException:
        run = await self._store.get_run(self.run_id)
        if run is not None and run.fencing == self._token and run.cancel_requested:
            return CancelRun()
        return DropRun()

    def _check_budget(
        self, estimate: Usage, budgets: tuple[tuple[Budget, Usage, str], ...]
    ) -> None:
        # Spent = journaled + reserved by the steps in flight (see tether.engine.ledger).
        steps = len(self._journal) + 1
        elapsed = time.time() - self._run.created_at
        ledger = self._ledger
        if self._budget is not None:
            spent = self._usage + ledger.reserved("run")
            self._check_one(self._budget, spent, steps, elapsed, estimate, "run")
        for budget, spent, scope in budgets:
            self._check_one(budget, spent + ledger.reserved(scope), 0, 0.0, estimate, scope)

    async def _reserve(
        self,
        seq: int,
        estimate: Usage,
        budgets: tuple[tuple[Budget, Usage, str], ...],
        windows: tuple[SpendWindow, ...],
    ) -> Reservation | None:
        """Hold `estimate` (already checked against the budgets) until the step settles."""
        if not windows and (estimate is ZERO or (self._budget is None and not budgets)):
            return None  # the hot path of plain steps and of runs without limits: no work
        scopes = (["run"] if self._budget is not None else []) + [scope for _, _, scope in budgets]
        reservation = self._ledger.hold(scopes, estimate)
        if windows:
            try:
                verdict = await self._ledger.reserve_windows(reservation, seq, windows)
            except StoreUnavailable:
                await reservation.release()
                raise self._stop(DropRun()) from None
            except BaseException:
                await reservation.release()
                raise
            if verdict is not None:
                error = window_exceeded(self.run_id, verdict, estimate)
                self.fatal = error
                raise error
        return reservation

    def _check_one(
        self, budget: Budget, spent: Usage, steps: int, elapsed: float, estimate: Usage, scope: str
    ) -> None:
        try:
            budget.check(
                spent=spent,
                steps=steps,
                elapsed=elapsed,
                estimate=estimate,
                scope=scope,
                run_id=self.run_id,
            )
        except BudgetExceeded as exc:
            if budget.on_exceed == "suspend":
                raise self._stop(Suspend(wake_at=None, waiting_for=BUDGET_SIGNAL)) from exc
            self.fatal = exc
            raise

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
    ) -> Any:
        self._check_live()
        rec = self._replayed(seq, name, kind)
        if self.fatal is not None and (rec is None or rec.status not in ("completed", "failed")):
            # The run is ending (a budget, a spend limit): nothing new starts meanwhile.
            raise self.fatal
        failures = 0
        carried = ZERO
        first_started: float | None = None
        if rec is not None:
            if rec.status in ("completed", "failed") and not self._derived:
                # Emitted again: the stream keeps each once (keys), and one a crash lost is back.
                self._emit_step("step_started", rec)
                self._emit_step(f"step_{rec.status}", rec)
            if rec.status == "completed":
                return decode(rec.output)
            if rec.status == "failed":
                error = rec.error or {}
                raise StepFailed(
                    name,
                    seq,
                    str(error.get("type", "Error")),
                    str(error.get("message", "")),
                    rec.attempts,
                )
            failures, carried, first_started = rec.attempts, Usage.from_dict(rec.usage), rec.started_at
            if rec.wake_at is not None and rec.wake_at > time.time():
                self._check_duration()  # woken by max_duration before the backoff ended
                remaining = rec.wake_at - time.time()
                if remaining >= retry.durable_after:
                    raise self._stop(Suspend(wake_at=self._wake_within_budget(rec.wake_at)))
                await asyncio.sleep(remaining)
                self._check_live()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._inflight.add(done)
        deadline = self._duration_deadline()
        timer = (
            loop.call_later(max(0.0, deadline - time.time()) + 0.001, self._duration_ran_out)
            if deadline is not None
            else None
        )
        self._running[seq] = {
            "seq": seq,
            "name": name,
            "kind": kind,
            # The pipeline node, when an upper layer put one in the meta (observe.names.NODE).
            "node": (meta or {}).get("tether.node"),
            "started_at": time.time(),
            "timeout": timeout,
        }
        reservation: Reservation | None = None
        try:
            self._check_budget(estimate, budgets)
            reservation = await self._reserve(seq, estimate, budgets, windows)
            if record_input is None and (args or kwargs):
                record_input = _describe_arguments(args, kwargs)
            if self._events is not None:
                await self._check_lease()  # a zombie announces no step it will not start
                # Held back on a deriving store: a step that ends soon has its start
                # event read from its journal row instead (`_step_events`).
                self._emit_step("step_started", StepRecord(
                    run_id=self.run_id, seq=seq, name=name, kind=kind, status="running",
                    attempts=failures + 1, meta=meta), provisional=self._derived)
            while True:
                await self._check_lease()
                attempt = failures + 1
                started = time.time()
                first_started = first_started or started
                step_ctx = StepContext(
                    run_id=self.run_id,
                    seq=seq,
                    name=name,
                    attempt=attempt,
                    labels=self.labels,
                    meta=dict(meta or {}),
                )
                try:
                    result = await self._interrupts.guard(
                        seq, self._invoke(fn, args, kwargs, is_async, timeout, step_ctx)
                    )
                    output = to_jsonable(result, what=f"the result of step {name!r}")
                except (Exception, SystemExit) as exc:
                    if exc is self._interrupts.reason:  # max_duration ran out, not a failure
                        raise
                    # sys.exit() in a step (or a library calling it) fails the step; left to
                    # propagate it would end the worker process and every run it holds.
                    failures = attempt
                    carried = carried + step_ctx.usage
                    entry = StepRecord(
                        run_id=self.run_id,
                        seq=seq,
                        name=name,
                        kind=kind,
                        status="failed",
                        input=record_input,
                        error=error_record(exc, timeout=timeout),
                        attempts=failures,
                        started_at=first_started,
                        finished_at=time.time(),
                        usage=carried.to_dict() or None,
                        meta=step_ctx.meta or None,
                    )
                    if isinstance(exc, UserError) or not retry.should_retry(exc, failures):
                        events = self._step_events(seq)
                        await self._write(entry, events)
                        if not events:
                            self._emit_step("step_failed", entry)
                        error = entry.error or {}
                        raise StepFailed(
                            name, seq, error["type"], error["message"], failures
                        ) from exc
                    delay = retry.delay(failures, exc)
                    wake = time.time() + delay
                    await self._write(_replace(entry, status="retrying", wake_at=wake))
                    self._emit_step("step_retrying", entry)
                    if delay >= retry.durable_after:
                        raise self._stop(Suspend(wake_at=self._wake_within_budget(wake))) from None
                    await self._interrupts.guard(seq, asyncio.sleep(delay))
                    self._check_live()
                    continue
                usage = carried + step_ctx.usage
                over = reservation.overshoot(step_ctx.usage) if reservation else None
                if over is not None:
                    step_ctx.meta[OVERSHOOT] = over
                events = self._step_events(seq)
                await self._write(
                    done_rec := StepRecord(
                        run_id=self.run_id,
                        seq=seq,
                        name=name,
                        kind=kind,
                        status="completed",
                        input=record_input,
                        output=output,
                        attempts=attempt,
                        started_at=first_started,
                        finished_at=time.time(),
                        usage=usage.to_dict() or None,
                        meta=step_ctx.meta or None,
                    ),
                    events,
                )
                if not events:
                    self._emit_step("step_completed", done_rec)
                return result
        finally:
            if timer is not None:
                timer.cancel()
            if reservation is not None:
                # Settled: the outcome (and its real usage) is journaled, or there is none.
                await reservation.release()
            self._inflight.discard(done)
            self._running.pop(seq, None)
            done.set_result(None)

    async def _invoke(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        is_async: bool,
        timeout: float | None,
        step_ctx: StepContext,
    ) -> Any:
        outer = _current.set(None)
        inner = _current_step.set(step_ctx)
        try:
            if is_async:
                if timeout is None:
                    return await fn(*args, **kwargs)
                async with asyncio.timeout(timeout):
                    return await fn(*args, **kwargs)
            loop = asyncio.get_running_loop()
            call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
            future = loop.run_in_executor(self._executor, call)
            if timeout is None:
                return await future
            return await asyncio.wait_for(future, timeout)
        finally:
            _current_step.reset(inner)
            _current.reset(outer)

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
        self._journal[seq] = done = _replace(rec, status="completed", finished_at=time.time())
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
        deadline = rec.wake_at if rec is not None else (now + timeout if timeout else None)
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
                    {"timeout": timeout} if timeout else None
                ) if names is None else {"names": names, "timeout": timeout},
                started_at=now,
                wake_at=deadline,
            )
        await self._flush_values()
        taking = _replace(waiting, finished_at=time.time())
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
            self._journal[seq] = received = _consumed(taking, output)
            self._emit_step("signal_received", received)
            return output
        if deadline is not None and time.time() >= deadline:
            await self._write(
                _replace(
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


BUDGET_SIGNAL = "tether.budget"
APPROVAL_SIGNAL_PREFIX = "approval"
"""A run gated on approval request X waits for ``approval:X`` (see `tether.trust.gate`); only a
recorded decision may send it, so `App.signal` refuses that name."""


@dataclass(slots=True)
class _BranchSeq:
    """The sequence space of one branch of `Context.branches`."""

    ctx_id: int
    base: int
    width: int
    index: int
    count: int = 0


class ReplayEnd(BaseException):
    """Replay-only execution reached an operation the recorded journal does not hold."""

    def __init__(self, seq: int, name: str) -> None:
        super().__init__(f"replay reached #{seq} {name!r}, past the end of the journal")
        self.seq = seq
        self.name = name


def _signal_names(names: object) -> list[str]:
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


def _consumed(taking: StepRecord, output: Any) -> StepRecord:
    """A wait's entry as the store journals it when a signal is consumed (`consume_signal`)."""
    return StepRecord(
        run_id=taking.run_id, seq=taking.seq, name=taking.name, kind=taking.kind,
        status="completed", input=taking.input, output=output, attempts=taking.attempts,
        started_at=taking.started_at, finished_at=taking.finished_at, meta=taking.meta,
    )


def _replace(rec: StepRecord, **changes: Any) -> StepRecord:
    from dataclasses import replace

    return replace(rec, **changes)


def _describe_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return to_jsonable({"args": list(args), "kwargs": kwargs}, what="step arguments")
    except UserError:
        return {"args": [repr(a)[:200] for a in args], "kwargs": {k: repr(v)[:200] for k, v in kwargs.items()}}
