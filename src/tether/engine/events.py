"""Run events: every run's stream of what happened, readable while it runs.

Kinds: ``run_started``, ``resumed``, ``step_started``, ``step_retrying``, ``step_completed``,
``step_failed``, ``waiting``, ``signal_received``, ``suspended``, ``finished``, and what upper
layers add (``model_text_delta``, ``tool_call``, ``approval_requested``, ``approval_decided``).

How the stream stays whole across a takeover, with no write on the journal's path:

1. each event about the journal carries a *key* derived from the run, the sequence number and
   the outcome (``<run>:<seq>:completed``); the store appends an event whose key it already
   holds as a no-op;
2. events are buffered and appended with the run's next journal write — in the same store
   transaction where the store can (`Store.submit_run_events`: SQLite's group commit, the next
   PostgreSQL write statement) — or
   `FLUSH_DELAY` after they were emitted when no write comes (a model streaming its text, a
   step that runs for a while), so events add no commit of their own to a step. A worker may
   die with events not yet appended — but the run is then taken over and *replayed*, and a
   replay emits again every event of the entries it replays: what was missing is appended (at
   a later position), what was there is skipped;
3. readers (`read_events`) add a run's ``finished`` event themselves if the worker died between
   ending the run and appending it;
4. live-only events (model text deltas) have no key: they are for watching, and a delta lost in
   a crash is covered by the completed model step that follows it;
5. on a store that derives step events from the journal (SQLite: `Store.derives_step_events`),
   a step's ``step_completed``/``step_failed`` is its journal row, and its ``step_started`` is
   *provisional*: held back, and withdrawn when the step ends first (the row stands for it
   too); it is appended only if the step is still running when the buffer is flushed, or
   with the next event of the same run (so the stream keeps its order).

So a reader that resumes after the last id it saw (SSE ``Last-Event-ID``) gets every completed
event once.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from tether.store.base import FINISHED_STATUSES, NewRunEvent, RunEventRecord, Store

log = logging.getLogger("tether.engine.events")


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One event of a run's stream (`RunHandle.events`)."""

    id: int
    """Position in the run's stream (increasing); resume after it with ``after=id``."""
    run_id: str
    kind: str
    at: float
    """Unix time the event happened."""
    seq: int | None
    """The journal entry (step number) the event is about, if any."""
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "run_id": self.run_id, "kind": self.kind, "at": self.at,
                "seq": self.seq, "data": self.data}


FLUSH_DELAY = 0.01
"""Seconds an event waits for a journal write to ride along with before it is appended alone."""


class EventLog:
    """An App's writer of run events: buffered, appended with the next journal write (see the
    module docstring)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._buffer: list[NewRunEvent] = []
        self._provisional: dict[str, NewRunEvent] = {}
        self._flushing: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._idle: asyncio.Event | None = None
        submit = getattr(store, "submit_run_events", None)
        self._submit: Any = submit if callable(submit) else None
        self._submitted: set[asyncio.Future[None]] = set()
        self._finish_appends = self._submit is not None and bool(
            getattr(store, "finish_appends_event", False))

    def emit(
        self, run_id: str, kind: str, *, seq: int | None = None,
        data: dict[str, Any] | None = None, key: str | None = None, at: float | None = None,
        provisional: bool = False,
    ) -> None:
        """Queue an event (see the module docstring for `key` and `provisional`, which needs
        a key); never blocks, never raises."""
        event = NewRunEvent(run_id=run_id, kind=kind, at=at or time.time(), seq=seq, data=data,
                            key=key)
        if provisional and key is not None:
            self._provisional[key] = event
        else:
            self._buffer.append(event)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._timer is None:
            # A fresh contextvars context: the emitting run's (its workflow Context, journal
            # and frames) would otherwise stay reachable through the timer.
            self._timer = loop.call_later(FLUSH_DELAY, self._due, context=contextvars.Context())

    def withdraw(self, key: str) -> None:
        """Drop the provisional event `key` if it is still held back (its step's journal row
        will stand for it)."""
        self._provisional.pop(key, None)

    def join_write(self) -> None:
        """Called just before a journal write: hand the buffered events to the store now, so
        that a group-committing store appends them in the same transaction."""
        if self._buffer and self._submit is not None:
            self._submit_buffered(held_since=None)

    async def flush(self) -> None:
        """Append everything queued so far."""
        task = self._flushing
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            await asyncio.shield(task)  # a batch on its way: after it, what is left
        if self._submit is not None:
            self._submit_buffered(held_since=float("inf"))
            pending = [f for f in self._submitted if f.get_loop() is asyncio.get_running_loop()]
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            return
        await self._append_buffered()

    def _due(self) -> None:
        self._timer = None
        if not self._buffer and not self._provisional:
            return
        if self._submit is not None:
            self._submit_buffered(held_since=time.time() - FLUSH_DELAY)
            if self._provisional and self._timer is None:
                # Steps that started less than FLUSH_DELAY ago: their start waits a little more.
                first = min(event.at for event in self._provisional.values())
                self._timer = asyncio.get_running_loop().call_later(
                    max(0.0, first + FLUSH_DELAY - time.time()), self._due,
                    context=contextvars.Context())
        elif self._flushing is None or self._flushing.done():
            loop = asyncio.get_running_loop()
            self._flushing = loop.create_task(self._flush_loop(), context=contextvars.Context())

    def _submit_buffered(self, *, held_since: float | None) -> None:
        """Submit the buffer, with the provisional events emitted at or before `held_since`
        and those of a run that has an event in the buffer."""
        batch, self._buffer = self._buffer, []
        if self._provisional:
            # The stream keeps the order events were emitted in: a held-back event goes with
            # any later event of its run.
            runs = {event.run_id for event in batch}
            promoted = [key for key, event in self._provisional.items()
                        if event.run_id in runs or (held_since is not None
                                                    and event.at <= held_since)]
            if promoted:
                batch.extend(self._provisional.pop(key) for key in promoted)
                batch.sort(key=lambda event: event.at)
        if not batch:
            return
        if self._timer is not None and not self._provisional:
            self._timer.cancel()
            self._timer = None
        try:
            future: asyncio.Future[None] = self._submit(batch)
        except Exception:
            log.warning("could not append %d run event(s)", len(batch), exc_info=True)
            return
        self._submitted.add(future)
        future.add_done_callback(self._appended)

    def _appended(self, future: asyncio.Future[None]) -> None:
        self._submitted.discard(future)
        if not future.cancelled() and future.exception() is not None:
            # Events describe; losing a batch must not fail a run. Keyed events come back
            # with the next replay of the run.
            log.warning("could not append run events: %s", future.exception())

    async def _flush_loop(self) -> None:
        await asyncio.sleep(0)  # gather what this loop turn emits into one transaction
        while self._buffer:
            await self._append_buffered()

    async def _append_buffered(self) -> None:
        batch, self._buffer = self._buffer, []
        if self._provisional:  # a store without group commit: nothing is held back
            batch.extend(self._provisional.values())
            self._provisional.clear()
            batch.sort(key=lambda event: event.at)
        if not batch:
            return
        try:
            await self._store.append_run_events(batch)
        except Exception:
            # Events describe; losing a batch must not fail a run. Keyed events come back
            # with the next replay of the run.
            log.warning("could not append %d run event(s)", len(batch), exc_info=True)

    def before_end(self, run_id: str) -> None:
        """Called just before run `run_id`'s final write: on a store that appends the
        ``finished`` event in that write's transaction, what was emitted before it (the run's
        held-back starts included) goes into the same transaction, ahead of it."""
        if not self._finish_appends:
            return
        for key in [k for k, event in self._provisional.items() if event.run_id == run_id]:
            self._buffer.append(self._provisional.pop(key))
        self.join_write()

    async def on_run_end(self, run_id: str, status: str) -> None:
        """Executor listener: the run ended or suspended."""
        if status in FINISHED_STATUSES and not self._finish_appends:
            self.emit(run_id, "finished", data={"status": status}, key=f"{run_id}:finished")
        await self.flush()


def step_key(run_id: str, seq: int, what: str) -> str:
    return f"{run_id}:{seq}:{what}"


async def read_events(store: Store, run_id: str, *, after: int = 0, limit: int = 500,
                      check_finished: bool = True) -> list[RunEvent]:
    """The run's events after position `after` (adding the ``finished`` event of a run whose
    worker died before appending it, when `check_finished`)."""
    return (await read_events_or_end(store, run_id, after=after, limit=limit,
                                     check_finished=check_finished))[0]


async def read_events_or_end(store: Store, run_id: str, *, after: int = 0, limit: int = 500,
                             check_finished: bool = True) -> tuple[list[RunEvent], bool]:
    """`read_events`, and whether the reader is past the end: the run finished and its
    ``finished`` event is at or before `after` (a reader resuming after the end, as a browser's
    `EventSource` does once the stream closed, would otherwise wait forever). Known only when
    `check_finished`."""
    records = await store.read_run_events(run_id, after=after, limit=limit)
    past_end = False
    if check_finished and (not records or records[-1].kind != "finished"):
        run = await store.get_run(run_id)
        if run is not None and run.status in FINISHED_STATUSES and not any(
            r.kind == "finished" for r in records
        ):
            await store.append_run_events([NewRunEvent(
                run_id=run_id, kind="finished", at=run.finished_at or time.time(),
                data={"status": run.status}, key=f"{run_id}:finished")])
            records = await store.read_run_events(run_id, after=after, limit=limit)
            past_end = not records  # its one finished event is kept (by key) before `after`
    return [_event(r) for r in records], past_end


def _event(record: RunEventRecord) -> RunEvent:
    return RunEvent(id=record.id, run_id=record.run_id, kind=record.kind, at=record.at,
                    seq=record.seq, data=dict(record.data or {}))


async def follow_events(
    store: Store, run_id: str, *, after: int = 0, poll: float = 0.01,
    until_finished: bool = True,
) -> AsyncIterator[RunEvent]:
    """Yield the run's events as they are appended, from position `after`; ends after the
    ``finished`` event (unless `until_finished` is false). Polls every `poll` seconds (a live
    model's text deltas reach the reader within a poll)."""
    idle = 0
    while True:
        # The run record is read only now and then: a finished run's own event usually is there.
        events, past_end = await read_events_or_end(store, run_id, after=after,
                                                    check_finished=idle % 20 == 0)
        if past_end:
            return
        for event in events:
            after = event.id
            yield event
            if until_finished and event.kind == "finished":
                return
        if events:
            idle = 1
            continue
        idle += 1
        await asyncio.sleep(poll)
