"""The PostgreSQL store: many workers on many hosts against one database.

* **Connections.** psycopg 3 async with a small connection pool *per event loop* (a process may
  call the store from its worker loop and from the App's sync portal; a connection must never
  be shared across loops), which connects inline so any loop may end at any time (`postgres_pool.Pool`).
  The URL is a libpq URL and may carry libpq options, e.g.
  ``postgresql://app@db:5432/prod?options=-csearch_path%3Dtether``. Two options are tether's own
  and are stripped before connecting: ``pool_max_size`` (per loop, default 8) and
  ``retry_seconds`` (how long to ride out a lost database, default 10).
* **Group commit** (`tether.store.postgres_commit`). Writes submitted during one event-loop
  iteration are applied in one transaction on one pooled connection; the batch's run
  creations, signals, journal writes, suspensions, finishes and signal consumptions each
  become one multi-row statement (a client starting 2,500 runs pays a few round trips, not
  2,500). Run events (`submit_run_events`) ride in the next write's statement as a
  data-modifying CTE; a step's own events are its journal row (`derives_step_events`) and a
  run's ``finished`` event is appended by the statement that finishes it, so a step costs its
  journal write alone. No two transactions in flight hold positions of one run's event
  stream, so a run's events commit in order. A write arriving on an idle loop is applied at
  once from its caller's task, and later writes batch behind it, so a sequential run pays one
  single-statement transaction (one round trip) per step while two hundred concurrent runs
  share them. Each write still gets its own fenced answer. Reads of runs (`get_run`) asked
  while one is on its way go together in one statement. The finish returns the run's row, so
  `App.run` reads nothing back: a sequential run of N steps is N + 2 statements.
* **Straight through libpq** (`tether.store.postgres_wire`). A lone journal write and a lone
  finish (every step and end of a sequential run) skip psycopg's cursor machinery: prepared
  once per connection, parameters sent as text, same errors.
* **Fencing.** A write for a claimed run checks the run's token in the same statement and
  share-locks the run row while doing so, so a write racing a takeover waits for it and is
  rejected rather than judged against the row as it was when the statement began.
* **Faults.** A lost connection (server restart, ``pg_terminate_backend``) is retried with
  backoff for ``retry_seconds``, then `StoreUnavailable` is raised and the engine leaves the run
  for takeover. Every write is idempotent (see `tether.store.postgres_sql` and
  `tether.store.postgres_journal_sql`), so retrying after an unknown commit outcome is safe.
* **Wake-ups.** Transactions that make a run runnable NOTIFY a channel named after the schema;
  each loop that waits for work keeps one dedicated LISTEN connection. Due timers are found by
  the worker's polling.
* **Spend reservations.** `reserve_spend` runs in its own transaction on its own connection
  (never in a write batch): it takes a transaction-scoped advisory lock per limit key, in
  sorted order, so reservers of one label on any host queue behind each other, then reads the
  window's journaled spend and the live reservations in one statement (one snapshot) and
  inserts. A batch holding run-row locks therefore never waits behind an advisory lock.
* **Migrations.** Numbered SQL files in ``migrations/postgres`` applied on open under
  ``pg_advisory_xact_lock``, recorded in ``schema_migrations``; safe when many workers start at
  once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import AsyncConnection, sql

from tether.errors import StoreError, StoreNotFound, StoreUnavailable
from tether.store import alerts_sql as al
from tether.store import events_sql
from tether.store import postgres_access_sql as pa
from tether.store import postgres_journal_sql as j
from tether.store import postgres_sql as q
from tether.store import queues_sql as qs
from tether.store import ratelimits_sql as rs
from tether.store.base import (
    Claim,
    Heartbeat,
    NewRun,
    NewRunEvent,
    QueueRecord,
    RunEventRecord,
    RunRecord,
    SignalRecord,
    StepRecord,
)
from tether.store.migrate import (
    COMPAT_TABLE,
    REQUIREMENT_SQL,
    Requirement,
    compat_rows,
    migration_files,
    too_new,
)
from tether.store.postgres_commit import (
    BARE,
    GroupCommit,
    LoopState,
    Write,
    resolve_with,
    wake_all,
)
from tether.store.postgres_commit import apply as _apply_batch
from tether.store.postgres_layers import LayerStatements
from tether.store.postgres_pool import Pool, parse_postgres_url

log = logging.getLogger("tether.store.postgres")

T = TypeVar("T")
Conn: TypeAlias = AsyncConnection[Any]
_TRANSIENT = (psycopg.OperationalError,)
_REFUSED = ("does not exist", "password authentication failed", "no pg_hba.conf entry")
"""What a server says at connection time about a URL that will not work however long one
retries (a database or role that does not exist, a wrong password, no access rule)."""


class PostgresStore(LayerStatements):
    """The PostgreSQL store (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conninfo, self.pool_max_size, self.retry_seconds = parse_postgres_url(url)
        self._reached = False
        """Whether a statement of this store has ever succeeded (see `_REFUSED`)."""
        self._states: dict[asyncio.AbstractEventLoop, LoopState] = {}
        self._states_lock = threading.Lock()
        self._listening: dict[asyncio.AbstractEventLoop, Conn] = {}
        """Each loop's LISTEN connection (`_listen`), for closing from outside its loop."""
        self._migrated = False
        self._known_schema = 0
        """The last migration this code knows (set when the store is migrated)."""
        self._liveness: dict[str, asyncio.Task[None]] = {}
        self._queues_seen = False
        self._commits = GroupCommit(self._apply)
        self._queues_looked = -_QUEUE_LOOK
        self.channel = "tether"
        """The NOTIFY channel; named after the schema on open so schemas sharing a database
        don't wake each other's workers."""

    # --- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        await self._state()

    async def _state(self) -> LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is not None and state.ready.done():
            state.ready.result()
            return state
        with self._states_lock:
            for dead in [lp for lp in self._states if lp.is_closed()]:
                self._abandon(self._states.pop(dead))
            state = self._states.get(loop)
            fresh = state is None
            if state is None:
                state = self._states[loop] = LoopState(
                    loop=loop,
                    pool=Pool(self.conninfo, self.pool_max_size, min(10.0, self.retry_seconds)),
                    ready=loop.create_future(),
                )
        if not fresh:
            await asyncio.shield(state.ready)
            return state
        try:
            if not self._migrated:
                await self._retrying("apply migrations", self._migrate, state)
                self._migrated = True
            else:
                await self._retrying("read the schema", self._read_channel, state)
        except BaseException as exc:
            with self._states_lock:
                self._states.pop(loop, None)
            await state.pool.close()
            if not state.ready.done():
                state.ready.set_exception(
                    exc if isinstance(exc, Exception) else StoreError(str(exc))
                )
                state.ready.exception()  # retrieved: later callers start afresh
            raise
        state.ready.set_result(None)
        return state

    async def close(self) -> None:
        current = asyncio.get_running_loop()
        with self._states_lock:
            states, self._states = list(self._states.values()), {}
        for state in states:
            if state.loop is current:
                await _close_state(state)
            elif _closes_itself(state.loop):
                future = asyncio.run_coroutine_threadsafe(_close_state(state), state.loop)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.wrap_future(future), 5.0)
            else:
                self._abandon(state)
        self._listening.clear()

    def close_sync(self) -> None:
        """Close every loop's connections from synchronous code (`App.close`). A loop running in
        another thread closes its own; one that has ended, or that runs in this thread (an
        `async def` calling `app.close()`, blocked in this call), cannot await: its connections
        are finished at once. (Closing through another loop waited 5 s on the blocked one and
        left its connections to the garbage collector.)"""
        with self._states_lock:
            states, self._states = list(self._states.values()), {}
        for state in states:
            if _closes_itself(state.loop):
                future = asyncio.run_coroutine_threadsafe(_close_state(state), state.loop)
                with contextlib.suppress(Exception):
                    future.result(5.0)
            else:
                self._abandon(state)
        self._listening.clear()

    def _abandon(self, state: LoopState) -> None:
        """Finish a loop's connections without awaiting (its loop cannot run them now)."""
        if state.listener is not None and not state.loop.is_closed():
            state.listener.cancel()  # so it does not reconnect when its loop runs again
        listening = self._listening.pop(state.loop, None)
        if listening is not None:
            with contextlib.suppress(Exception):
                listening.pgconn.finish()
        state.pool.abandon()

    async def _migrate(self, conn: Conn) -> None:
        async with conn.transaction():
            cur = await conn.execute("SELECT current_schema()")
            row = await cur.fetchone()
            if not row or not row[0]:
                raise StoreError(
                    f"the search_path of {_safe(self.url)} names no existing schema; create it "
                    "(CREATE SCHEMA name) or fix options=-csearch_path=… in the URL"
                )
            schema = str(row[0])
            # One lock per schema: concurrent openers wait here, then see the work done.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(f"tether:{schema}".encode()),)
            )
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at double precision NOT NULL)"
            )
            cur = await conn.execute("SELECT version FROM schema_migrations")
            applied = {r[0] for r in await cur.fetchall()}
            files = migration_files("postgres")
            known = self._known_schema = files[-1][0]
            if applied and max(applied) > known and COMPAT_TABLE in applied:
                cur = await conn.execute(REQUIREMENT_SQL)
                row = await cur.fetchone()
                too_new(_safe(self.url), known, Requirement(*row) if row else None)
            done: list[tuple[int, str, str]] = []
            for number, name, text in files:
                if number in applied:
                    continue
                try:
                    await conn.execute(text.encode())  # no parameters: run as a script
                except psycopg.Error as exc:
                    raise StoreError(f"PostgreSQL migration {name} failed: {exc}") from exc
                await conn.execute(
                    f"INSERT INTO schema_migrations VALUES (%s, %s, {q.NOW})", (number, name)
                )
                done.append((number, name, text))
            rows = compat_rows(done)
            if rows and (COMPAT_TABLE in applied or any(n == COMPAT_TABLE for n, _, _ in done)):
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO schema_compat (version, name, requires, applied_by) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", rows)
        self.channel = f"tether:{schema}"[:63]

    async def check_schema(self) -> None:
        found = await self._statement("read the schema's requirement", _requirement)
        too_new(_safe(self.url), self._known_schema, found)

    async def _read_channel(self, conn: Conn) -> None:
        cur = await conn.execute("SELECT current_schema()")
        row = await cur.fetchone()
        self.channel = f"tether:{row[0] if row and row[0] else 'public'}"[:63]

    # --- running statements ----------------------------------------------------------------------

    async def _retrying(
        self, what: str, fn: Callable[..., Awaitable[T]], state: LoopState, *args: Any
    ) -> T:
        """Run ``fn(conn, *args)`` on a pooled connection; ride out a lost database."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.02
        retried = False
        while True:
            try:
                conn = await state.pool.take()
                healthy = False
                try:
                    result = await fn(conn, *args)
                    healthy = self._reached = True
                    return result
                finally:
                    await state.pool.give_back(conn, healthy)
            except _TRANSIENT as exc:
                # psycopg's messages span lines ("\n\tIs the server running…"): one line each.
                reason = " ".join(str(exc).split())
                if not self._reached and any(m in reason for m in _REFUSED):
                    # A server that answers "no such database/role" or "wrong password" before
                    # this store ever got in is a wrong URL, not an outage: said at once.
                    raise StoreNotFound(
                        f"PostgreSQL refused the store {_safe(self.url)}: {reason}; check the "
                        "database, user and password in the URL (create the database first, "
                        "e.g. `createdb NAME`)"
                    ) from None
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailable(
                        f"PostgreSQL unreachable for {self.retry_seconds:.0f}s while trying to "
                        f"{what} ({type(exc).__name__}: {reason}); check the server and the URL "
                        f"{_safe(self.url)}"
                    ) from exc
                # Said once per call, not once per retry (a CLI command printed thirty lines).
                log.log(logging.DEBUG if retried else logging.WARNING,
                        "PostgreSQL: could not %s (%s); retrying for up to %.0fs",
                        what, reason, self.retry_seconds)
                retried = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _read(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await self._retrying(what, fn, await self._state(), *args)

    async def _statement(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """A write that is one statement: on an autocommit connection that statement is its own
        transaction, which saves the BEGIN and COMMIT round trips."""
        return await self._retrying(what, fn, await self._state(), *args)

    async def _transaction(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        async def apply(conn: Conn) -> T:
            async with conn.transaction():
                return await fn(conn, *args)

        return await self._retrying(what, apply, await self._state())

    async def _submit(
        self,
        run_id: str,
        fn: Callable[[Conn], Awaitable[q.Outcome]] | None,
        *,
        step: tuple[str, int, StepRecord] | None = None,
        position: bool = False,
        finish: tuple[str, int, str, Any, dict[str, Any] | None] | None = None,
        consume: tuple[str, int, StepRecord] | None = None,
        create: tuple[NewRun, str | None, float] | None = None,
        signal: tuple[str, str, Any, str | None] | None = None,
        suspend: tuple[str, int, float | None, str | Sequence[str] | None] | None = None,
        single: bool = False,
    ) -> Any:
        """A write through the loop's group commit (`tether.store.postgres_commit`)."""
        write = Write(
            run_id, fn, step=step, position=position, finish=finish, consume=consume,
            create=create, signal=signal, suspend=suspend, single=single,
        )
        return await self._commits.submit(await self._state(), write)

    async def _apply(
        self, state: LoopState, batch: list[Write], events: Sequence[NewRunEvent]
    ) -> None:
        await self._retrying("write", _apply_batch, state, batch, events, self.channel)

    # --- wake-ups ------------------------------------------------------------------------------

    async def wait_for_work(self, timeout: float) -> None:
        state = await self._state()
        if state.listener is None or state.listener.done():
            state.listener = state.loop.create_task(self._listen(state), context=BARE())
        if state.woken:
            state.woken = False
            return
        future: asyncio.Future[None] = state.loop.create_future()
        state.waiters.add(future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            state.waiters.discard(future)

    async def _listen(self, state: LoopState) -> None:
        """Keep one LISTEN connection for the loop, reconnecting with backoff."""
        delay = 0.05
        reconnecting = False
        while True:
            try:
                conn = await AsyncConnection.connect(state.pool.conninfo, **state.pool.kwargs)
                self._listening[state.loop] = conn
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    delay = 0.05
                    if reconnecting:
                        wake_all(state)  # whatever was sent while we were not listening
                    reconnecting = True
                    async for _ in conn.notifies():
                        wake_all(state)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("PostgreSQL LISTEN connection lost (%s); reconnecting", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    # --- client side ---------------------------------------------------------------------------

    async def create_run(
        self, new: NewRun, *, owner: str | None = None, lease_seconds: float = 10.0
    ) -> tuple[RunRecord, int | None, bool]:
        if new.queue is not None:
            result = await self._transaction(
                f"start run {new.id}", qs.pg_create_queued_run, new, owner, lease_seconds
            )
            if result[2] and owner is None:
                await self._statement("wake workers", _notify, self.channel)
            return result
        return await self._submit(new.id, None, create=(new, owner, lease_seconds))

    async def get_run(self, run_id: str) -> RunRecord | None:
        state = await self._state()
        if not state.reading:
            # Nothing read meanwhile: one statement of its own, from the caller's task.
            state.reading = True
            try:
                return await self._retrying(f"read run {run_id}", q.get_run, state, run_id)
            finally:
                state.reading = False
                if state.wanted:
                    self._read_wanted(state)
        # Reads asked while one is on its way go together, in one statement, when it is back
        # (a client signalling five hundred runs checks each first).
        future: asyncio.Future[RunRecord | None] = state.loop.create_future()
        state.wanted.setdefault(run_id, []).append(future)
        return await future

    def _read_wanted(self, state: LoopState) -> None:
        wanted, state.wanted = state.wanted, {}
        state.reading = True

        async def read() -> None:
            try:
                found = await self._retrying("read runs", q.get_runs, state, list(wanted))
            except BaseException as exc:
                for futures in wanted.values():
                    resolve_with(futures, exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                for run_id, futures in wanted.items():
                    resolve_with(futures, None, found.get(run_id))
            finally:
                state.reading = False
                if state.wanted and not state.loop.is_closed():
                    self._read_wanted(state)

        task = state.loop.create_task(read(), context=BARE())
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        labels: dict[str, str] | None = None,
        limit: int = 50,
        id_contains: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: tuple[float, str] | None = None,
    ) -> list[RunRecord]:
        return await self._read(
            "list runs", q.list_runs, status, workflow, labels, limit, id_contains, since,
            until, before,
        )

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        return await self._read(f"load the journal of run {run_id}", q.load_steps, run_id)

    async def load_run(self, run_id: str) -> tuple[RunRecord, list[StepRecord]] | None:
        return await self._read("load a run", q.load_run, run_id)

    async def send_signal(self, run_id: str, name: str, payload: Any) -> RunRecord | None:
        key = secrets.token_hex(16)  # one per call, shared by its retries
        return await self._submit(run_id, None, signal=(run_id, name, payload, key))

    async def list_signals(self, run_id: str) -> list[SignalRecord]:
        return await self._read(f"list signals of run {run_id}", q.list_signals, run_id)

    async def cancel_run(self, run_id: str, reason: str) -> RunRecord | None:
        return await self._submit(run_id, lambda c: q.cancel_run(c, run_id, reason))

    async def fork_run(
        self, source_id: str, from_seq: int, new: NewRun, *, supersede: str | None = None
    ) -> RunRecord:
        return await self._submit(
            new.id, lambda c: q.fork_run(c, source_id, from_seq, new, supersede)
        )

    async def set_budget(self, run_id: str, budget: dict[str, Any] | None) -> RunRecord | None:
        return await self._submit(run_id, lambda c: q.set_budget(c, run_id, budget))

    async def prune(
        self,
        finished_before: float,
        *,
        status: str | None = None,
        workflow: str | None = None,
        exclude_statuses: Sequence[str] = (),
        exclude_workflows: Sequence[str] = (),
    ) -> int:
        total = 0
        filtered = bool(status or workflow or exclude_statuses or exclude_workflows)
        while True:
            deleted = await self._statement(
                "prune runs", q.prune, finished_before, status, workflow,
                tuple(exclude_statuses), tuple(exclude_workflows),
            )
            total += deleted
            if deleted < q.PRUNE_CHUNK:
                if not filtered:
                    await self._statement(
                        "prune the audit trail", pa.prune_audit, finished_before
                    )
                    await self._statement(
                        "prune old alerts", al.pg_prune_alerts, finished_before
                    )
                return total

    # --- worker side ---------------------------------------------------------------------------

    async def claim_runs(
        self,
        owner: str,
        workflows: Sequence[tuple[str, str]],
        *,
        limit: int,
        lease_seconds: float,
        executing: Collection[str] | None = None,
    ) -> list[Claim]:
        if limit <= 0 or not workflows:
            return []
        busy = None if executing is None else sorted(executing)
        claims: list[Claim] = await self._statement(
            "claim runs", j.claim_runs, owner, tuple(workflows), limit, lease_seconds, busy
        )
        if len(claims) < limit and await self._queued_runs_exist():
            # Runs of named queues: claimed within their limits (see store/queues_sql.py).
            claims += await self._transaction(
                "claim queued runs", qs.pg_claim_queued, owner, tuple(workflows),
                limit - len(claims), lease_seconds,
            )
        return claims

    async def claim_run(self, run_id: str, owner: str, *, lease_seconds: float) -> Claim | None:
        return await self._submit(run_id, lambda c: j.claim_run(c, run_id, owner, lease_seconds))

    async def hold_liveness(self, owner: str) -> bool:
        if owner in self._liveness:
            return True
        state = await self._state()
        locked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._keep_liveness(state, owner, locked), name="tether-live")
        self._liveness[owner] = task
        try:
            await asyncio.wait_for(asyncio.shield(locked), self.retry_seconds)
        except Exception as exc:
            log.warning("cannot take the liveness lock of %s (%s)", owner, exc)
            await self.drop_liveness(owner)
            return False
        return True

    async def drop_liveness(self, owner: str) -> None:
        task = self._liveness.pop(owner, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _keep_liveness(
        self, state: LoopState, owner: str, locked: asyncio.Future[None]
    ) -> None:
        """Hold `owner`'s liveness lock on a session of its own, for as long as this task runs:
        the server releases it when the session ends (the process died). A lost session is
        reopened and relocked with backoff; meanwhile the owner counts as dead and its runs may
        be taken over (fenced, as after a lease expiry)."""
        delay = 0.05
        while True:
            try:
                conn = await AsyncConnection.connect(state.pool.conninfo, **state.pool.kwargs)
                async with conn:
                    await conn.execute(j.LIVENESS_LOCK, (owner,))
                    delay = 0.05
                    if not locked.done():
                        locked.set_result(None)
                    async for _ in conn.notifies():  # returns, or raises, when the session ends
                        pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("liveness session of %s lost (%s); reconnecting", owner, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def heartbeat(
        self,
        owner: str,
        lease_seconds: float,
        progress: Mapping[str, dict[str, Any] | None] | None = None,
        *,
        runs: Collection[str] | None = None,
    ) -> Heartbeat:
        return await self._statement(
            "renew leases", j.heartbeat, owner, lease_seconds, progress, runs
        )

    async def next_wake(self) -> float | None:
        return await self._read("find the next due run", q.next_wake)

    derives_step_events = True
    """A step's final journal row stands for its run events (`postgres_journal_sql._EV_POS`)."""
    finish_appends_event = True
    """The statement that finishes a run appends its ``finished`` event
    (`postgres_journal_sql._FINISH_RUN`)."""

    async def write_step(
        self, run_id: str, token: int, step: StepRecord, *, events: bool = False
    ) -> bool:
        return await self._submit(run_id, None, step=(run_id, token, step), position=events)

    async def consume_signal(
        self, run_id: str, token: int, step: StepRecord
    ) -> SignalRecord | None:
        return await self._submit(run_id, None, consume=(run_id, token, step))

    async def consume_first_signal(
        self, run_id: str, token: int, step: StepRecord, names: Sequence[str]
    ) -> SignalRecord | None:
        return await self._submit(
            run_id, lambda c: j.consume_first_signal(c, run_id, token, step, tuple(names))
        )

    async def cancel_requests(self, owner: str) -> frozenset[str]:
        return await self._read("read cancel requests", j.cancel_requests, owner)

    async def suspend_run(
        self,
        run_id: str,
        token: int,
        *,
        wake_at: float | None,
        waiting_for: str | Sequence[str] | None,
    ) -> str | None:
        return await self._submit(run_id, None, suspend=(run_id, token, wake_at, waiting_for))

    async def finish_run(
        self,
        run_id: str,
        token: int,
        *,
        status: str,
        output: Any = None,
        error: dict[str, Any] | None = None,
    ) -> RunRecord | None:
        return await self._submit(run_id, None, finish=(run_id, token, status, output, error))

    async def release_run(self, run_id: str, token: int) -> bool:
        return await self._submit(run_id, lambda c: j.release_run(c, run_id, token), single=True)

    # --- queues ----------------------------------------------------------------------------------

    async def _queued_runs_exist(self) -> bool:
        """Whether runs of named queues may be due. Until this store has seen one, it looks at
        most every `_QUEUE_LOOK` seconds, so a deployment without queues pays no extra round
        trip per claim (a queue's first runs wait that long at most)."""
        now = time.monotonic()
        if not self._queues_seen and now - self._queues_looked < _QUEUE_LOOK:
            return False
        self._queues_looked = now
        found = await self._read("look for queued runs", qs.pg_any_queued)
        self._queues_seen = self._queues_seen or found
        return found

    async def put_queue(self, queue: QueueRecord) -> None:
        await self._statement(f"declare queue {queue.name}", qs.pg_put_queue, queue)

    async def acquire_rate(
        self, key: str, *, requests: int | None, tokens: int | None, window: float, cost: int,
        grant: str,
    ) -> float:
        return await self._transaction(
            f"acquire rate limit {key}", rs.pg_acquire, key, requests, tokens, window, cost, grant
        )

    async def settle_rate(self, grant: str) -> None:
        await self._statement("settle a rate-limit grant", rs.pg_settle, grant)

    # --- run events ------------------------------------------------------------------------------

    async def append_run_events(self, events: Sequence[NewRunEvent]) -> None:
        if not events:
            return

        async def append(conn: Conn) -> q.Outcome:
            await events_sql.postgres_append(conn, events)
            return None, False

        # In the loop's write batch (group commit), not a transaction of its own: a busy worker
        # appends events as often as it journals steps, and each own transaction cost the
        # server as much as a batch of steps. The key "" locks no run row (see `_apply`). Alone
        # it is one statement (autocommit).
        await self._submit("", append, single=True)

    def submit_run_events(self, events: Sequence[NewRunEvent]) -> asyncio.Future[None]:
        """`append_run_events` carried by the next write of this loop (no await): the engine
        calls it just before a journal write, and the events go in that write's statement (see
        `postgres_journal_sql._riding`). If no write takes them within this loop turn, they are
        appended alone."""
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if not events:
            done: asyncio.Future[None] = loop.create_future()
            done.set_result(None)
            return done
        if state is None or not state.ready.done() or state.ready.exception() is not None:
            return loop.create_task(self.append_run_events(events), context=BARE())
        return self._commits.submit_events(state, events)

    async def read_run_events(
        self, run_id: str, *, after: int = 0, limit: int = 500
    ) -> list[RunEventRecord]:
        return await self._read(
            f"read the events of run {run_id}", events_sql.postgres_read, run_id, after, limit
        )


def _closes_itself(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether `loop` can run a close: running, and not in this thread (where it waits on us)."""
    if not loop.is_running() or loop.is_closed():
        return False
    try:
        return asyncio.get_running_loop() is not loop
    except RuntimeError:  # no loop runs in this thread
        return True


async def _close_state(state: LoopState) -> None:
    if state.listener is not None:
        state.listener.cancel()
        with contextlib.suppress(BaseException):
            await state.listener
    await state.pool.close()


_QUEUE_LOOK = 1.0


async def _notify(conn: Conn, channel: str) -> None:
    await conn.execute("SELECT pg_notify(%s, '')", (channel,))


async def _requirement(conn: Conn) -> Requirement | None:
    cur = await conn.execute(REQUIREMENT_SQL)
    row = await cur.fetchone()
    return Requirement(*row) if row else None


def _safe(url: str) -> str:
    """The URL without its password, for error messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
