"""The PostgreSQL store's group commit: the writes one event loop submits, batched into shared
transactions (see "Group commit" in `tether.store.postgres`).

* **Batches.** Writes submitted during one loop iteration are applied in one transaction; the
  batch's run creations, signals, journal writes, finishes and signal consumptions each become
  one multi-row statement. At most `MAX_INFLIGHT_BATCHES` transactions are in flight per
  loop; writes arriving meanwhile wait and join the next batch, which is what makes batches
  grow under load. A write arriving on an idle loop is applied at once from its caller's task
  (no batch task or future in between), so a sequential run pays one single-statement
  transaction per step.
* **Stream order.** A run's event stream is ordered by id, and ids are taken at insert but
  become visible at commit, so two transactions in flight could commit one run's positions
  out of order and a reader following ids would skip the earlier one. Positions are taken by
  run events riding along (`submit_events`), by journal writes standing for their step's
  events (`Write.position`) and by finishes (the `finished` event). Hence: events ride in one
  transaction in flight at a time (`LoopState.carrying`), and no transaction is sent with
  positions of a run that another one in flight holds (`LoopState.flying`), nor before that
  run's events waiting to ride (they were emitted first). A batch that fails is applied again
  write by write, its events first.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from psycopg import AsyncConnection

from tether.errors import StoreError, StoreUnavailable
from tether.store import events_sql
from tether.store import postgres_journal_sql as j
from tether.store import postgres_sql as q
from tether.store.base import NewRun, NewRunEvent, StepRecord

Conn: TypeAlias = AsyncConnection[Any]

# The store's own tasks and callbacks run in an empty contextvars context: started from inside
# a run, they would otherwise keep that run's workflow Context (journal, frames) reachable for
# as long as they live.
BARE = contextvars.Context

MAX_INFLIGHT_BATCHES = 4
"""Write transactions one loop keeps in flight at once."""
SPLIT_ABOVE = 128
"""Batches this large are split over the free connections."""


@dataclass(eq=False)
class Write:
    """One write waiting for its batch. Journal writes (`step`), run finishes (`finish`) and
    signal consumptions (`consume`) are folded into multi-row statements per kind; anything
    else runs `fn` in the batch's transaction."""

    run_id: str
    fn: Callable[[Conn], Awaitable[q.Outcome]] | None
    future: asyncio.Future[Any] | None = None
    """None for a write applied directly by its caller (see `GroupCommit.submit`)."""
    step: tuple[str, int, StepRecord] | None = None
    position: bool = False
    """The journal write stands for its step's events (takes a position in the stream)."""
    finish: tuple[str, int, str, Any, dict[str, Any] | None] | None = None
    consume: tuple[str, int, StepRecord] | None = None
    create: tuple[NewRun, str | None, float] | None = None
    signal: tuple[str, str, Any, str | None] | None = None
    suspend: tuple[str, int, float | None, str | Sequence[str] | None] | None = None
    result: Any = None
    notify: bool = False
    single: bool = False
    """`fn` is one statement, so alone in its batch it runs in autocommit: no BEGIN or COMMIT
    round trips."""

    @property
    def positioned(self) -> bool:
        """Whether the write takes positions in its run's event stream."""
        return self.position or self.finish is not None


@dataclass(eq=False)
class LoopState:
    """What one event loop owns: its pool, its write batch, its LISTEN connection."""

    loop: asyncio.AbstractEventLoop
    pool: Any
    ready: asyncio.Future[None]
    """Resolved once the pool is open and the schema migrated."""
    pending: list[Write] = field(default_factory=list[Write])
    scheduled: bool = False
    inflight: int = 0
    tasks: set[asyncio.Task[Any]] = field(default_factory=set[asyncio.Task[Any]])
    listener: asyncio.Task[None] | None = None
    waiters: set[asyncio.Future[None]] = field(default_factory=set[asyncio.Future[None]])
    woken: bool = False
    """A notification arrived while nobody waited; the next wait returns at once."""
    riding: list[NewRunEvent] = field(default_factory=list[NewRunEvent])
    """Run events waiting for the next write to carry them (`GroupCommit.submit_events`)."""
    riders: list[asyncio.Future[None]] = field(default_factory=list[asyncio.Future[None]])
    """Their callers' futures (one per group that rides together), resolved when the write
    carrying them commits."""
    ride_check: bool = False
    """A check is scheduled that appends the events alone if no write took them."""
    carrying: bool = False
    """A transaction carrying events is in flight (one at a time; see the module docstring)."""
    flying: set[str] = field(default_factory=set[str])
    """Runs with positions in a transaction in flight (see the module docstring)."""
    reading: bool = False
    """A `get_run` is on its way (`PostgresStore.get_run`)."""
    wanted: dict[str, list[asyncio.Future[Any]]] = field(
        default_factory=dict[str, list[asyncio.Future[Any]]]
    )
    """`get_run` calls waiting to be read together, by run id."""


Apply: TypeAlias = Callable[[LoopState, list[Write], Sequence[NewRunEvent]], Awaitable[None]]


class GroupCommit:
    """The write path of one store. `apply` runs a batch (with the events riding along) in one
    transaction, retrying through a lost connection."""

    def __init__(self, apply: Apply) -> None:
        self._apply = apply

    async def submit(self, state: LoopState, write: Write) -> Any:
        if not state.pending and not state.inflight and self._may_go(state, write):
            # An idle loop (a sequential run's every write): apply it from the caller's task,
            # with no batch task or future in between. Writes submitted meanwhile queue in
            # `pending` and go as the next batch, exactly as behind a batch in flight.
            state.inflight += 1
            events, riders, runs = _take_riding(state)
            if write.positioned:
                runs.add(write.run_id)
                state.flying.add(write.run_id)
            try:
                await self._apply(state, [write], events)
            except BaseException as exc:
                _riders_failed(state, events, riders, exc)
                raise
            else:
                resolve(riders, None)
            finally:
                state.inflight -= 1
                self._landed(state, runs, bool(events))
            if write.notify:
                wake_all(state)
            return write.result
        write.future = state.loop.create_future()
        state.pending.append(write)
        if not state.scheduled:
            state.scheduled = True
            state.loop.call_soon(self._dispatch, state, context=BARE())
        return await write.future

    def _may_go(self, state: LoopState, write: Write) -> bool:
        """Whether `write` may be sent now (see the module docstring)."""
        if not write.positioned:
            return True
        if write.run_id in state.flying:
            return False
        return _riding_free(state) or all(e.run_id != write.run_id for e in state.riding)

    def _dispatch(self, state: LoopState) -> None:
        state.scheduled = False
        while state.pending and state.inflight < MAX_INFLIGHT_BATCHES:
            ready: list[Write] = []
            held: list[Write] = []
            for write in state.pending:
                (ready if self._may_go(state, write) else held).append(write)
            if not ready:
                return  # each waits for a transaction in flight; its end dispatches again
            state.pending = held
            events, riders, carried = _take_riding(state)
            free = MAX_INFLIGHT_BATCHES - state.inflight
            if len(ready) >= 2 * SPLIT_ABOVE and free > 1 and not events:
                # A burst (a thousand signals at once): spread it over several connections.
                # Chunks hold disjoint runs, so they never wait on each other's row locks.
                batches = _split_by_run(ready, free)
            else:
                batches = [ready]
            for index, batch in enumerate(batches):
                runs = {w.run_id for w in batch if w.positioned}
                if index == 0:
                    runs |= carried
                    with_events, with_riders = events, riders
                else:
                    with_events, with_riders = [], []
                state.flying |= runs
                state.inflight += 1
                task = state.loop.create_task(
                    self._run_batch(state, batch, with_events, with_riders, runs), context=BARE()
                )
                state.tasks.add(task)
                task.add_done_callback(state.tasks.discard)

    async def _run_batch(
        self,
        state: LoopState,
        batch: list[Write],
        events: list[NewRunEvent],
        riders: list[asyncio.Future[None]],
        runs: set[str],
    ) -> None:
        try:
            try:
                await self._apply(state, batch, events)
                outcomes: list[tuple[bool, Any]] = [(True, w.result) for w in batch]
                resolve(riders, None)
            except StoreUnavailable as exc:
                outcomes = [(False, exc)] * len(batch)
                _riders_failed(state, events, riders, exc)
            except Exception as exc:
                if len(batch) == 1:
                    _riders_failed(state, events, riders, exc)
                    outcomes = [(False, exc)]
                else:
                    # One write failed the shared transaction: apply each alone so the error
                    # reaches only its own caller. The events go again first, alone: they were
                    # emitted before the writes, and a journal write or finish takes the next
                    # positions of its run's stream (once: a second failure is their callers').
                    if events:
                        try:
                            await self._apply(state, [], events)
                        except BaseException as again:
                            failed = again if isinstance(again, Exception) else None
                            resolve(riders, failed or StoreError(str(again)))
                            if not isinstance(again, Exception):
                                raise
                        else:
                            resolve(riders, None)
                    outcomes = []
                    for write in batch:
                        try:
                            await self._apply(state, [write], ())
                            outcomes.append((True, write.result))
                        except Exception as single:
                            outcomes.append((False, single))
            if any(ok and w.notify for (ok, _), w in zip(outcomes, batch, strict=True)):
                wake_all(state)
            for (ok, value), write in zip(outcomes, batch, strict=True):
                if write.future is None or write.future.done():
                    continue
                if ok:
                    write.future.set_result(value)
                else:
                    write.future.set_exception(value)
        finally:
            state.inflight -= 1
            self._landed(state, runs, bool(events))

    def _landed(self, state: LoopState, runs: set[str], carried: bool) -> None:
        """A transaction is done: what waited for it may go now."""
        state.flying -= runs
        if carried:
            state.carrying = False
        if state.loop.is_closed():
            return
        if state.pending and not state.scheduled:
            state.scheduled = True
            state.loop.call_soon(self._dispatch, state, context=BARE())
        if state.riding and not state.ride_check:
            state.ride_check = True
            state.loop.call_soon(self._ride_alone, state, context=BARE())

    # --- run events riding along ---------------------------------------------------------------

    def submit_events(self, state: LoopState, events: Sequence[NewRunEvent]) -> asyncio.Future[None]:
        """Events carried by the next write of this loop (see `PostgresStore.submit_run_events`);
        appended alone if no write takes them within this loop turn."""
        loop = state.loop
        # One future for everything that will ride in the same write: a worker with hundreds
        # of runs submits events before each journal write and awaits them at each run's
        # end; a future per submission made those waits the busiest thing in the process.
        if not state.riders:
            state.riders.append(loop.create_future())
        future = state.riders[-1]
        state.riding.extend(events)
        if not state.ride_check:
            state.ride_check = True
            loop.call_soon(self._ride_alone, state, context=BARE())
        return future

    def _ride_alone(self, state: LoopState) -> None:
        state.ride_check = False
        events, riders, runs = _take_riding(state)
        if not events:
            return  # none waiting, or a transaction in flight holds them back: it calls again

        async def append() -> None:
            try:
                await self._apply(state, [], events)
            except BaseException as exc:
                resolve(riders, exc if isinstance(exc, Exception) else StoreError(str(exc)))
                if not isinstance(exc, Exception):
                    raise
            else:
                resolve(riders, None)
            finally:
                self._landed(state, runs, True)

        task = state.loop.create_task(append(), context=BARE())
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)


def _riding_free(state: LoopState) -> bool:
    """Whether the events waiting to ride may go now (see the module docstring)."""
    if state.carrying:
        return False
    return not state.flying or all(e.run_id not in state.flying for e in state.riding)


def _take_riding(
    state: LoopState,
) -> tuple[list[NewRunEvent], list[asyncio.Future[None]], set[str]]:
    """The events waiting to ride along, their futures and their runs, if they may go now; the
    caller's transaction then carries them (`GroupCommit._landed` when it is done)."""
    if not state.riding or not _riding_free(state):
        return [], [], set()
    events, riders = state.riding, state.riders
    state.riding, state.riders = [], []
    state.carrying = True
    runs = {e.run_id for e in events}
    state.flying |= runs
    return events, riders, runs


def _riders_failed(
    state: LoopState,
    events: Sequence[NewRunEvent],
    riders: list[asyncio.Future[None]],
    exc: BaseException,
) -> None:
    """The write carrying events failed (a fenced-off run's write does not fail: it commits,
    events included). Unless the store is gone, the events try again alone (once: a failure
    of that fails their callers; run events are best-effort, see `tether.engine.events`)."""
    if not events:
        return
    if isinstance(exc, StoreUnavailable):
        resolve(riders, exc)
        return
    state.riding[:0] = events  # ahead of what queued meanwhile: order kept
    state.riders[:0] = riders


def resolve(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def resolve_with(
    futures: list[asyncio.Future[Any]], error: BaseException | None, value: Any = None
) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)


def wake_all(state: LoopState) -> None:
    if not state.waiters:
        state.woken = True
        return
    for future in state.waiters:
        if not future.done():
            future.set_result(None)


def _split_by_run(writes: list[Write], parts: int) -> list[list[Write]]:
    ordered = sorted(writes, key=lambda w: w.run_id)  # stable: a run's writes keep their order
    size = -(-len(ordered) // parts)
    chunks: list[list[Write]] = [[]]
    for write in ordered:
        current = chunks[-1]
        if len(current) >= size and current[-1].run_id != write.run_id:
            chunks.append(current := [])
        current.append(write)
    return chunks


# --- applying a batch ----------------------------------------------------------------------------


async def apply(
    conn: Conn, batch: list[Write], events: Sequence[NewRunEvent], channel: str
) -> None:
    """Apply `batch` with `events` riding along, in one transaction (one statement when it
    can); NOTIFY `channel` when a write made a run runnable."""
    if not batch:
        await events_sql.postgres_append(conn, events)  # one statement: autocommit
        return
    step = batch[0].step if len(batch) == 1 else None
    if step is not None:
        # A sequential run's every step: one statement, carrying the events (autocommit).
        write = batch[0]
        written = await j.write_steps(conn, [step], events, [write.position])
        write.result = bool(written)
        return
    if len(batch) == 1 and not events and batch[0].suspend is not None:
        write = batch[0]
        async with conn.transaction():  # its own lock, then the mailbox (see `suspend_run`)
            write.result, write.notify = await j.suspend_run(conn, *batch[0].suspend)
            if write.notify:
                await conn.execute("SELECT pg_notify(%s, '')", (channel,))
        return
    if len(batch) == 1 and not events and (
        batch[0].single or batch[0].create or batch[0].signal
    ):
        write = batch[0]
        if write.create is not None:
            write.result, write.notify = await q.create_run(conn, *write.create)
        elif write.signal is not None:
            write.result, write.notify = await q.send_signal(conn, *write.signal)
        else:
            assert write.fn is not None
            write.result, write.notify = await write.fn(conn)
        if write.notify:  # after the commit, as NOTIFY in a transaction is delivered
            await conn.execute("SELECT pg_notify(%s, '')", (channel,))
        return
    steps = _distinct_rounds([w for w in batch if w.step is not None], _step_key)
    finishes = _distinct_rounds([w for w in batch if w.finish is not None], _run_key)
    consumes = _distinct_rounds([w for w in batch if w.consume is not None], _run_key)
    creates = [w for w in batch if w.create is not None]
    signals = _distinct_rounds([w for w in batch if w.signal is not None], _run_key)
    suspends = _distinct_rounds([w for w in batch if w.suspend is not None], _run_key)
    others = sorted((w for w in batch if w.fn is not None), key=lambda w: w.run_id)
    single_lock = not finishes or len(finishes[0]) == 1
    if (
        not others and not consumes and not creates and not signals and not suspends
        and len(steps) + len(finishes) == 1 and single_lock
    ):
        # The hot path: one multi-row statement, carrying the events, is the whole
        # transaction (one round trip). Its statement locks its run rows in id order itself;
        # several finishes must lock theirs in order first.
        await _apply_rounds(conn, steps, finishes, [], events)
        return
    async with conn.transaction():
        # Every run row this transaction will lock, taken up front in id order, so no two
        # transactions wait on each other in a cycle (the journal fence share-locks too).
        # Runs being created are not locked: their rows don't exist yet.
        locked = (
            {w.run_id for w in others}
            | {w.run_id for r in finishes for w in r}
            | {w.run_id for r in steps for w in r}
            | {w.run_id for r in consumes for w in r}
            | {w.run_id for r in signals for w in r}
            | {w.run_id for r in suspends for w in r}
        )
        if len(locked) > 1 or suspends:
            # Suspensions read the mailbox after this lock, in a statement of their own.
            await j.lock_runs(conn, sorted(locked))
        notify = False
        if creates:
            # One multi-row INSERT for all the runs started in this loop turn.
            made = await q.create_runs(conn, [w.create for w in creates if w.create])
            for write, (result, wake) in zip(creates, made, strict=True):
                write.result, write.notify = result, wake
                notify = notify or wake
        for round_ in signals:
            # One statement per round of distinct runs for the batch's signals (after
            # the creates: a run may be started and signalled in one turn).
            sent = await q.send_signals(conn, [w.signal for w in round_ if w.signal])
            for write, (result, wake) in zip(round_, sent, strict=True):
                write.result, write.notify = result, wake
                notify = notify or wake
        await _apply_rounds(conn, steps, finishes, consumes, events)
        for round_ in suspends:
            # One statement for the batch's suspensions (after their journal writes).
            outcomes = await j.suspend_runs(conn, [w.suspend for w in round_ if w.suspend])
            for write in round_:
                write.result, write.notify = outcomes.get(write.run_id, (None, False))
                notify = notify or write.notify
        for write in others:
            assert write.fn is not None
            write.result, write.notify = await write.fn(conn)
            notify = notify or write.notify
        if notify:
            await conn.execute("SELECT pg_notify(%s, '')", (channel,))


def _step_key(write: Write) -> Any:
    assert write.step is not None
    return (write.step[0], write.step[2].seq)


def _run_key(write: Write) -> Any:
    return write.run_id


def _distinct_rounds(writes: list[Write], key: Callable[[Write], Any]) -> list[list[Write]]:
    """Split writes so no round touches the same row twice (one statement cannot update a row
    twice); in practice there is one round."""
    rounds: list[list[Write]] = []
    seen: list[set[Any]] = []
    for write in writes:
        k = key(write)
        for index, keys in enumerate(seen):
            if k not in keys:
                keys.add(k)
                rounds[index].append(write)
                break
        else:
            seen.append({k})
            rounds.append([write])
    return rounds


async def _apply_rounds(
    conn: Conn,
    steps: list[list[Write]],
    finishes: list[list[Write]],
    consumes: list[list[Write]],
    events: Sequence[NewRunEvent] = (),
) -> None:
    """Apply the folded writes; `events` ride along in the first step or finish statement, or
    are appended in a statement of their own when there is none."""
    riding = events
    for round_ in consumes:
        taken = await j.consume_signals(conn, [w.consume for w in round_ if w.consume is not None])
        for write in round_:
            write.result = taken.get(write.run_id)
    for round_ in steps:
        written = await j.write_steps(
            conn, [w.step for w in round_ if w.step is not None], riding,
            [w.position for w in round_],
        )
        riding = ()
        for write in round_:
            write.result = _step_key(write) in written
    for round_ in finishes:
        finished = await j.finish_runs(
            conn, [w.finish for w in round_ if w.finish is not None], riding
        )
        riding = ()
        for write in round_:
            write.result = finished.get(write.run_id)
    if riding:
        await events_sql.postgres_append(conn, riding)
