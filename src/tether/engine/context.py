"""The workflow context: journal replay and the execution of every `ctx` operation.

The durable waits (sleep, signal waits, child runs) are in `tether.engine.waits`, what a
running step sees of itself (`StepContext`, `current_step`) in `tether.engine.steps`; both are
importable from here too.

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
import uuid as uuid_module
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from concurrent.futures import Executor
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tether.engine.budget import ZERO, Budget, Usage
from tether.engine.children import CHILD_WAIT_KIND, outcome_usage
from tether.engine.control import CancelRun, DropRun, Suspend
from tether.engine.interrupts import StepInterrupts
from tether.engine.lease import Leases
from tether.engine.ledger import LOST_SEND, OVERSHOOT, Ledger, Reservation
from tether.engine.registry import StepDef, make_step
from tether.engine.retry import NO_RETRY, Retry
from tether.engine.serde import Decoder, to_jsonable
from tether.engine.step_budget import BUDGET_SIGNAL, StepBudgets
from tether.engine.steps import (
    StepContext,
    current_step,
    describe_arguments,
    enter_step,
    error_record,
    leave_step,
)
from tether.engine.stopping import StopControl
from tether.engine.waits import DurableWaits
from tether.errors import (
    NonDeterminismError,
    StepFailed,
    StoreUnavailable,
    UserError,
)
from tether.store.base import RunRecord, SpendWindow, StepRecord, Store
from tether.store.events_sql import step_event_data

_current: ContextVar[weakref.ref[Context] | None] = ContextVar("tether_context", default=None)
"""A *weak* reference: timers, callbacks and tasks started inside a run copy the contextvars
context and may outlive the run (a cancelled timer stays in the event loop until it falls due);
they must not keep its Context — journal, workflow frames — alive."""
_branch: ContextVar[_BranchSeq | None] = ContextVar("tether_branch", default=None)
_identity = Decoder(None)

__all__ = [
    "APPROVAL_SIGNAL_PREFIX",
    "BUDGET_SIGNAL",
    "Context",
    "ReplayEnd",
    "StepContext",
    "bound",
    "current_context",
    "current_step",
    "error_record",
    "step_wrapper",
]


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


def step_wrapper(definition: StepDef) -> Callable[..., Any]:
    """The callable `@app.step` returns: journaled inside a workflow, plain outside one."""
    fn = definition.fn

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        ctx = current_context()
        if ctx is None:
            return fn(*args, **kwargs)
        return ctx.call_step(definition, args, kwargs)

    call.__tether_step__ = definition  # type: ignore[attr-defined]
    return call


class Context(DurableWaits, StopControl, StepBudgets):
    """Handed to a workflow as its first argument; every method is journaled.

    The waits (`DurableWaits`) and the executor's stop hooks (`StopControl`) are inherited;
    each names what it uses of this class by a protocol whose members only this class defines
    (a member one of them defined would be shadowed by the other's protocol stub).
    """

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
        lost: Sequence[Usage] = (),
        resent: int | None = None,
    ) -> None:
        """`lost`: the worst cases of calls earlier holders had in flight when they died
        (`Store.lost_holds`): never journaled, maybe billed, counted against the budget.
        `resent`: the journal position the lost holder was in at its last heartbeat, not
        journaled: the step there is marked `LOST_SEND` when it is journaled here."""
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
        self._resent = resent
        for rec in journal:
            if rec.usage:
                self._usage = self._usage + Usage.from_dict(rec.usage)
            if rec.kind == CHILD_WAIT_KIND:
                self._usage = self._usage + outcome_usage(rec)
        for usage in lost:
            self._usage = self._usage + usage
        self._pending_values: list[StepRecord] = []
        self._inflight: set[asyncio.Future[None]] = set()
        self._running: dict[int, dict[str, Any]] = {}
        self._stopping: BaseException | None = None
        self._cancel_requested = False
        self._interrupts = StepInterrupts(self._stop)
        self.interrupted: list[dict[str, Any]] = []
        """The steps a cancel cut short (``seq``, ``name``, ``kind``): none is journaled, so
        the run's error names them."""
        self.children: list[str] = []
        """The child runs this execution started or replayed the start of — an interrupted
        start too, whose child may exist unjournaled: a cancel of this run reaches them."""
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

    def _step_events(self, seq: int) -> bool:
        """Whether the step's final journal row stands for its events (`Store.write_step`); if
        so, its start event, if still held back, is withdrawn (the row stands for it too)."""
        if not self._derived:
            return False
        assert self._events is not None
        self._events.withdraw(f"{self.run_id}:{seq}:started")
        return True

    # --- executor hooks --------------------------------------------------------------------------

    def progress(self) -> dict[str, Any] | None:
        """The oldest operation executing right now (for the heartbeat), or ``None``."""
        if not self._running:
            return None
        return self._running[min(self._running)]

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

    async def _write_fenced(self, rec: StepRecord, events: bool = False) -> None:
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

    async def _write(self, rec: StepRecord, events: bool = False) -> None:
        if self._pending_values:
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
        if self._resent is not None and seq == self._resent:  # its last holder was lost in it
            meta = {**(meta or {}), LOST_SEND: 1}
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
                record_input = describe_arguments(args, kwargs)
            checked = False
            if self._events is not None:
                await self._check_lease()  # a zombie announces no step it will not start
                checked = True
                # Held back on a deriving store: a step that ends soon has its start
                # event read from its journal row instead (`_step_events`).
                self._events.emit(
                    self.run_id, "step_started", seq=seq,
                    data=step_event_data(name, kind, failures + 1, meta, None),
                    key=f"{self.run_id}:{seq}:started", provisional=self._derived)
            while True:
                if not checked:  # nothing awaited since the check just above
                    await self._check_lease()
                checked = False
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
                    result = await self._invoke(seq, fn, args, kwargs, is_async, timeout, step_ctx)
                    output = to_jsonable(result, what=f"the result of step {name!r}")
                except asyncio.CancelledError:
                    if reservation is not None:
                        # Cancelled in flight (a worker stopping past its grace period, or
                        # workflow code cancelling it): it may have been billed. Its store rows
                        # stay; once the run changes hands they count as a lost holder's.
                        reservation.abandon()
                    raise
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
        seq: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        is_async: bool,
        timeout: float | None,
        step_ctx: StepContext,
    ) -> Any:
        # Guarded against interrupts in this frame (`StepInterrupts.begin`…`end`), not through
        # `guard`: one coroutine less for every step in flight.
        interrupts = self._interrupts
        task = interrupts.begin(seq)
        outer = _current.set(None)
        inner = enter_step(step_ctx)  # `running`, without a generator per step
        try:
            if is_async:
                if timeout is None:
                    result = await fn(*args, **kwargs)
                else:
                    async with asyncio.timeout(timeout):
                        result = await fn(*args, **kwargs)
            else:
                loop = asyncio.get_running_loop()
                call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
                future = loop.run_in_executor(self._executor, call)
                if timeout is None:
                    result = await future
                else:
                    result = await asyncio.wait_for(future, timeout)
        except asyncio.CancelledError:
            reason = interrupts.cancelled(task)
            if reason is None:
                raise
            raise reason from None
        finally:
            leave_step(inner)
            _current.reset(outer)
            interrupts.end(seq)
        interrupts.returned(task)
        return result


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


def _replace(rec: StepRecord, **changes: Any) -> StepRecord:
    from dataclasses import replace

    return replace(rec, **changes)

