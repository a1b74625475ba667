"""The SQLite store's connection and its group commit: writes submitted on one event loop
while another is committing share one transaction (`Connection`)."""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tether.errors import StoreError

T = TypeVar("T")

_YIELD_EVERY = 0.001
"""Seconds a quiet loop's lone writer may go without yielding (see `Connection.write`)."""
_BUSY_FOR = 0.05
"""Seconds a loop counts as busy after a second writer turned up while one was committing."""


@dataclass(slots=True)
class _LoopWrites:
    """What `Connection.write` knows of one event loop's writers."""

    inline: bool = False
    """A write committed at once is yielding: writers arriving now join a batch."""
    yield_at: float = 0.0
    busy_until: float = 0.0


class Connection:
    """One SQLite connection shared by the event loops of a process, guarded by a lock.

    Reads run inline. Writes are *group-committed on the caller's loop*: the first write of
    a loop iteration, with nothing queued, commits at once in its caller (which then yields
    once); every other write submitted meanwhile is queued, and a callback scheduled with
    ``call_soon`` applies the queue in one ``BEGIN IMMEDIATE`` transaction before any caller
    is told its outcome. A lone sequential run pays one commit per step, no thread hop and
    one loop iteration; two hundred concurrent runs share about two commits per iteration.
    A write that raises is undone alone (the batch is replayed with a savepoint per write),
    so write functions must only touch the connection.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        every: int = 0,
        on_commits: Callable[[], None] | None = None,
    ) -> None:
        self._conn = connect()
        self._every = every
        self._on_commits = on_commits
        """Called every `every` commits (the store's checkpoint request, `sqlite_checkpoint`)."""
        self._commits = 0
        self._lock = threading.Lock()
        self._batches: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        self._batches_lock = threading.Lock()
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWrites] = (
            weakref.WeakKeyDictionary())

    def call_sync(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            return fn(self._conn, *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            return fn(self._conn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Commit `fn` before returning. A write with nothing queued on its loop commits at
        once, in the caller; writes arriving while one of those yields, or while a batch is
        queued, join the batch, so concurrent runs keep sharing commits.

        After committing at once the caller yields -- then other writers of the loop find it
        in progress and batch -- unless the loop is *quiet*: no other writer turned up in the
        last `_BUSY_FOR` seconds. A quiet loop's lone writer (one run of instant steps) yields
        only every `_YIELD_EVERY` seconds, which still lets timers, I/O and any new writer in
        (and a new writer makes the loop busy again)."""
        loop = asyncio.get_running_loop()
        with self._batches_lock:
            state = self._loops.get(loop)
            if state is None:
                state = self._loops[loop] = _LoopWrites()
            alone = not state.inline and loop not in self._batches
            if alone:
                state.inline = True
            elif state.inline:
                state.busy_until = time.monotonic() + _BUSY_FOR
        if not alone:
            return await self.submit(fn, *args)
        try:
            with self._lock:
                ((ok, value),) = self._transaction([(fn, args, None)])
            now = time.monotonic()
            if now >= state.yield_at or now < state.busy_until:
                state.yield_at = now + _YIELD_EVERY
                await asyncio.sleep(0)
        finally:
            state.inline = False
        if ok:
            return value
        raise value

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue a write into this loop turn's batch now; the future has its outcome."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._batches_lock:
            batch = self._batches.get(loop)
            if batch is None:
                batch = self._batches[loop] = []
                loop.call_soon(self._flush, loop, context=contextvars.Context())
            batch.append((fn, args, future))
        return future

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._batches_lock:
            batch = self._batches.pop(loop, [])
        if batch:
            with self._lock:
                outcomes = self._transaction(batch)
            for (_, _, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.cancelled():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _transaction(self, batch: list[Any]) -> list[tuple[bool, Any]]:
        # Writes almost never raise (a fenced-off write returns False), so a batch first runs
        # without a savepoint per write; only when one raises is the batch rolled back and
        # replayed with savepoints, so that the failing write alone is undone.
        if len(batch) > 1:
            outcomes = self._attempt(batch, isolated=False)
            if outcomes is not None:
                return outcomes
        outcomes = self._attempt(batch, isolated=True)
        assert outcomes is not None
        return outcomes

    def _attempt(self, batch: list[Any], *, isolated: bool) -> list[tuple[bool, Any]] | None:
        """One transaction over the batch. Not `isolated`: ``None`` (all rolled back) as soon
        as a write raises. `isolated`: each write in a savepoint of its own."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return [(False, StoreError(f"SQLite could not begin a write: {exc}"))] * len(batch)
        outcomes: list[tuple[bool, Any]] = []
        single = len(batch) == 1
        if not isolated:
            for fn, args, _ in batch:
                try:
                    outcomes.append((True, fn(conn, *args)))
                except Exception:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    return None
            return self._commit(batch, outcomes)
        for fn, args, _ in batch:
            if not single:
                conn.execute("SAVEPOINT op")
            try:
                outcomes.append((True, fn(conn, *args)))
                if not single:
                    conn.execute("RELEASE op")
            except Exception as exc:
                outcomes.append((False, exc))
                if single:
                    conn.execute("ROLLBACK")
                    return outcomes
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
        return self._commit(batch, outcomes)

    def _commit(
        self, batch: list[Any], outcomes: list[tuple[bool, Any]]
    ) -> list[tuple[bool, Any]]:
        conn = self._conn
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [(False, StoreError(f"SQLite commit failed: {exc}"))] * len(batch)
        if self._on_commits is not None:
            self._commits += 1
            if self._commits >= self._every:
                self._commits = 0
                self._on_commits()
        return outcomes
