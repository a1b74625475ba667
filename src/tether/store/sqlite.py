"""The embedded store: one SQLite file in WAL mode, shared by any number of worker processes.

Writes are group-committed per event-loop iteration (see `tether.store.sqlite_commit`): each caller learns its
outcome only after the commit, a single sequential run pays one commit per step, and two hundred
concurrent runs share commits. Reads use a second connection, so they never wait behind a
commit.

Durability: by default ``synchronous=NORMAL`` — a committed step survives a process crash
(``kill -9``), but the last few transactions can be lost on power loss or an OS crash. Pass
``?synchronous=full`` in the URL to fsync on every commit.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from tether.errors import StoreError, StoreNotFound, UserError
from tether.store import alerts_sql as al
from tether.store import events_sql
from tether.store import queues_sql as qs
from tether.store import ratelimits_sql as rs
from tether.store import schedules_sql as sq
from tether.store import sqlite_access_sql as sa
from tether.store import sqlite_layers_sql as layers_q
from tether.store import sqlite_sql as q
from tether.store import sqlite_workers_sql as workers_q
from tether.store.base import (
    LIVE_MARK,
    WORKER_LIVE_LEASES,
    AlertRecord,
    AuditRecord,
    Claim,
    CutCall,
    Heartbeat,
    NewAlert,
    NewRun,
    NewRunEvent,
    PrincipalRecord,
    QueueRecord,
    RingChangeRecord,
    RunEventRecord,
    RunRecord,
    ScheduleRecord,
    SignalRecord,
    SpendVerdict,
    SpendWindow,
    StepRecord,
    TrustActionRecord,
    WorkerRecord,
)
from tether.store.jsontext import dumps, loads
from tether.store.migrate import migrate_sqlite, sqlite_requirement, too_new
from tether.store.sqlite_checkpoint import BACKSTOP_PAGES, CHECKPOINT_EVERY, CHECKPOINTS
from tether.store.sqlite_commit import Connection
from tether.store.sqlite_liveness import LockFiles

T = TypeVar("T")
def parse_sqlite_url(url: str) -> tuple[str, dict[str, str]]:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite:///:memory:``."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise UserError(f"not a SQLite URL: {url!r} (expected sqlite:///path/to/file.db)")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise UserError(f"SQLite URL {url!r} names no file; use e.g. sqlite:///tether.db")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return path, options


class SQLiteStore:
    """The embedded default store (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path, options = parse_sqlite_url(url)
        sync = options.get("synchronous", "normal").upper()
        if sync not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise UserError(
                f"invalid synchronous={sync.lower()!r} in {url!r}; use normal (default) or full"
            )
        self._synchronous = sync
        self._memory = self.path == ":memory:"
        self._writer: Connection | None = None
        self._reader: Connection | None = None
        self._open_lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self._waiters_lock = threading.Lock()
        self._locks = None if self._memory else LockFiles(self.path)
        self._probed_at = 0.0
        self._positions: q.Positions = {}
        """Event positions reserved for the steps of runs held here (`q.step_position`)."""
        self._described = f"the SQLite store {self.url}"
        self._known_schema = 0
        """The last migration this code knows (set when the store is opened)."""

    # --- lifecycle -----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if not self._memory:
            folder = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(folder):
                raise StoreNotFound(
                    f"cannot open the SQLite store {self.url}: the directory {folder} does not "
                    "exist; create it (mkdir -p) or point --store / $TETHER_STORE elsewhere"
                )
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
        except sqlite3.Error as exc:
            raise StoreNotFound(
                f"cannot open the SQLite store {self.url} ({os.path.abspath(self.path)}): {exc}; "
                "check the path and its permissions, or point --store / $TETHER_STORE elsewhere"
            ) from None
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            if not self._memory:
                _enable_wal(conn, self.path)
                # Checkpoints run beside the writer (`sqlite_checkpoint`); its own stay a backstop.
                conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        except sqlite3.Error as exc:
            conn.close()
            raise StoreNotFound(
                f"cannot open the SQLite store {self.url} ({os.path.abspath(self.path)}): {exc}; "
                "is that file a tether database? Point --store / $TETHER_STORE at one"
            ) from None
        return conn

    def _ensure_open(self) -> tuple[Connection, Connection]:
        if self._writer is not None and self._reader is not None:
            return self._writer, self._reader
        with self._open_lock:
            if self._writer is None:
                writer = (Connection(self._connect) if self._memory else Connection(
                    self._connect, every=CHECKPOINT_EVERY,
                    on_commits=functools.partial(CHECKPOINTS.request, self.path)))
                try:
                    self._known_schema = writer.call_sync(migrate_sqlite, self._described)
                except BaseException:
                    writer.close()
                    raise
                self._reader = writer if self._memory else Connection(self._connect)
                self._writer = writer
        assert self._writer is not None and self._reader is not None
        return self._writer, self._reader

    async def open(self) -> None:
        self._ensure_open()

    async def close(self) -> None:
        self.close_sync()

    def close_sync(self) -> None:
        with self._open_lock:
            if self._reader is not None and self._reader is not self._writer:
                self._reader.close()
            if self._writer is not None:
                self._writer.close()
            self._reader = self._writer = None

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._ensure_open()[0].write(fn, *args)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._ensure_open()[1].read(fn, *args)

    # --- in-process wake-ups -------------------------------------------------------------------

    def _notify(self) -> None:
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, set()
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:
                pass

    async def wait_for_work(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        key = (loop, future)
        with self._waiters_lock:
            self._waiters.add(key)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            with self._waiters_lock:
                self._waiters.discard(key)

    # --- client side ---------------------------------------------------------------------------

    async def create_run(
        self, new: NewRun, *, owner: str | None = None, lease_seconds: float = 10.0
    ) -> tuple[RunRecord, int | None, bool]:
        create = qs.create_queued_run if new.queue is not None else q.create_run
        result = await self._write(create, new, owner, lease_seconds)
        if result[2] and owner is None:
            self._notify()
        return result

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await self._read(q.get_run, run_id)

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
            q.list_runs, status, workflow, labels, limit, id_contains, since, until, before
        )

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        return await self._read(q.load_steps, run_id)

    async def load_run(self, run_id: str) -> tuple[RunRecord, list[StepRecord]] | None:
        return await self._read(q.load_run, run_id)

    async def send_signal(self, run_id: str, name: str, payload: Any) -> RunRecord | None:
        run = await self._write(q.send_signal, run_id, name, payload)
        if run is not None and run.status == "queued":
            self._notify()
        return run

    async def list_signals(self, run_id: str) -> list[SignalRecord]:
        return await self._read(q.list_signals, run_id)

    async def cancel_run(self, run_id: str, reason: str) -> RunRecord | None:
        return await self._write(q.cancel_run, run_id, reason)

    async def fork_run(
        self, source_id: str, from_seq: int, new: NewRun, *, supersede: str | None = None
    ) -> RunRecord:
        run = await self._write(q.fork_run, source_id, from_seq, new, supersede)
        self._notify()
        return run

    async def set_budget(self, run_id: str, budget: dict[str, Any] | None) -> RunRecord | None:
        run = await self._write(q.set_budget, run_id, budget)
        if run is not None and run.status == "queued":
            self._notify()
        return run

    async def prune(
        self,
        finished_before: float,
        *,
        status: str | None = None,
        workflow: str | None = None,
        exclude_statuses: Sequence[str] = (),
        exclude_workflows: Sequence[str] = (),
    ) -> int:
        deleted = await self._write(
            q.prune, finished_before, status, workflow, tuple(exclude_statuses),
            tuple(exclude_workflows),
        )
        if status is None and workflow is None and not exclude_statuses and not exclude_workflows:
            await self._write(sa.prune_audit, finished_before)
            await self._write(al.prune_alerts, finished_before)
        return deleted

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
        probe: Callable[[list[str]], set[str]] | None = None
        now = time.monotonic()
        if self._locks is not None and now - self._probed_at >= LIVENESS_PROBE_SECONDS:
            self._probed_at = now
            probe = self._locks.dead
        return await self._write(
            _claim_with_queues, owner, tuple(workflows), limit, lease_seconds, executing, probe
        )

    async def release_memory(self) -> None:
        """Drop what the connections' page caches hold (``PRAGMA shrink_memory``); an idle
        worker calls it after a burst (`tether.engine.memory`)."""
        writer, reader = self._ensure_open()
        for conn in {id(writer): writer, id(reader): reader}.values():
            conn.call_sync(_shrink_memory)

    async def hold_liveness(self, owner: str) -> bool:
        self._ensure_open()
        return self._locks is not None and self._locks.hold(owner)

    async def drop_liveness(self, owner: str) -> None:
        if self._locks is not None:
            self._locks.drop(owner)

    async def claim_run(self, run_id: str, owner: str, *, lease_seconds: float) -> Claim | None:
        return await self._write(_claim_one, run_id, owner, lease_seconds, self._locks)

    async def heartbeat(
        self,
        owner: str,
        lease_seconds: float,
        progress: Mapping[str, dict[str, Any] | None] | None = None,
        *,
        runs: Collection[str] | None = None,
    ) -> Heartbeat:
        return await self._write(q.heartbeat, owner, lease_seconds, progress, runs)

    async def next_wake(self) -> float | None:
        return await self._read(q.next_wake)

    derives_step_events = True
    finish_appends_event = True
    """Steps' started/completed/failed events are read from their journal rows (`write_step`'s
    ``events``), not stored as rows of their own."""

    async def write_step(
        self, run_id: str, token: int, step: StepRecord, *, events: bool = False
    ) -> bool:
        return await self._write(q.write_step, run_id, token, step, events, self._positions)

    async def consume_signal(
        self, run_id: str, token: int, step: StepRecord
    ) -> SignalRecord | None:
        return await self._write(q.consume_signal, run_id, token, step)

    async def consume_first_signal(
        self, run_id: str, token: int, step: StepRecord, names: Sequence[str]
    ) -> SignalRecord | None:
        return await self._write(q.consume_first_signal, run_id, token, step, tuple(names))

    async def cancel_requests(self, owner: str) -> frozenset[str]:
        return await self._read(q.cancel_requests, owner)

    async def suspend_run(
        self,
        run_id: str,
        token: int,
        *,
        wake_at: float | None,
        waiting_for: str | Sequence[str] | None,
    ) -> str | None:
        self._positions.pop((run_id, token), None)
        status = await self._write(q.suspend_run, run_id, token, wake_at, waiting_for)
        if status == "queued":
            self._notify()
        return status

    async def finish_run(
        self,
        run_id: str,
        token: int,
        *,
        status: str,
        output: Any = None,
        error: dict[str, Any] | None = None,
    ) -> RunRecord | None:
        self._positions.pop((run_id, token), None)
        return await self._write(q.finish_run, run_id, token, status, output, error)

    async def release_run(self, run_id: str, token: int) -> bool:
        self._positions.pop((run_id, token), None)
        released = await self._write(q.release_run, run_id, token)
        if released:
            self._notify()
        return released

    # --- queues ----------------------------------------------------------------------------------

    async def put_queue(self, queue: QueueRecord) -> None:
        await self._write(qs.put_queue, queue)

    async def acquire_rate(
        self, key: str, *, requests: int | None, tokens: int | None, window: float, cost: int,
        grant: str,
    ) -> float:
        return await self._write(rs.acquire, key, requests, tokens, window, cost, grant)

    async def settle_rate(self, grant: str) -> None:
        await self._write(rs.settle, grant)

    # --- schedules -------------------------------------------------------------------------------

    async def put_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord:
        return await self._write(sq.put_schedule, schedule)

    async def get_schedule(self, name: str) -> ScheduleRecord | None:
        return await self._read(sq.get_schedule, name)

    async def list_schedules(self, *, due_by: float | None = None) -> list[ScheduleRecord]:
        return await self._read(sq.list_schedules, due_by)

    async def set_schedule_paused(self, name: str, paused: bool) -> ScheduleRecord | None:
        return await self._write(sq.set_schedule_paused, name, paused)

    async def delete_schedule(self, name: str) -> bool:
        return await self._write(sq.delete_schedule, name)

    async def advance_schedule(
        self, name: str, expected: float, next_at: float, *, fired_at: float | None = None,
        run_id: str | None = None,
    ) -> bool:
        return await self._write(sq.advance_schedule, name, expected, next_at, fired_at, run_id)
    # --- alerts and metrics ----------------------------------------------------------------------

    async def record_alert(self, alert: NewAlert) -> AlertRecord | None:
        return await self._write(al.record_alert, alert)

    async def claim_alerts(
        self, owner: str, *, limit: int, lease_seconds: float, only: str | None = None
    ) -> list[AlertRecord]:
        return await self._write(al.claim_alerts, owner, limit, lease_seconds, only)

    async def settle_alert(
        self, alert_id: str, owner: str, *, delivered: bool, error: str | None = None,
        retry_at: float | None = None,
    ) -> bool:
        return await self._write(al.settle_alert, alert_id, owner, delivered, error, retry_at)

    async def list_alerts(
        self, *, kind: str | None = None, state: str | None = None,
        since: float | None = None, limit: int = 100,
    ) -> list[AlertRecord]:
        return await self._read(al.list_alerts, kind, state, since, limit)

    async def run_counts(self) -> list[tuple[str, str, int]]:
        return await self._read(al.run_counts)

    async def queue_backlog(self, now: float) -> list[tuple[str | None, int, float | None]]:
        return await self._read(al.queue_backlog, now)

    # --- worker registry -------------------------------------------------------------------------

    async def register_worker(self, worker: WorkerRecord) -> None:
        await self._write(workers_q.register_worker, worker)

    async def check_schema(self) -> None:
        self._ensure_open()
        too_new(self._described, self._known_schema, await self._read(sqlite_requirement))

    async def touch_worker(self, owner: str) -> bool:
        return await self._write(workers_q.touch_worker, owner)

    async def remove_worker(self, owner: str) -> None:
        await self._write(workers_q.remove_worker, owner)

    async def list_workers(self) -> list[WorkerRecord]:
        return await self._read(workers_q.list_workers, WORKER_LIVE_LEASES)

    async def pending_versions(self) -> list[tuple[str, str | None, str, int]]:
        return await self._read(q.pending_versions)

    # --- used by upper layers that keep their own tables ----------------------------------------

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` inside a write transaction (for upper-layer tables)."""
        return await self._write(fn, *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` on the read connection."""
        return await self._read(fn, *args)

    # --- observe layer ---------------------------------------------------------------------------

    async def load_window(
        self, since: float, until: float | None = None
    ) -> list[tuple[RunRecord, list[StepRecord]]]:
        return await self._read(layers_q.load_window, since, until)

    async def label_spend(self, key: str, value: str, since: float) -> tuple[float, int]:
        return await self._read(layers_q.label_spend, key, value, since)

    async def reserve_spend(
        self,
        run_id: str,
        token: int,
        reservation_id: str,
        cost_usd: float,
        windows: Sequence[SpendWindow],
    ) -> SpendVerdict | None:
        return await self._write(
            layers_q.reserve_spend, run_id, token, reservation_id, cost_usd, tuple(windows)
        )

    async def release_spend(self, reservation_id: str) -> None:
        await self._write(layers_q.release_spend, reservation_id)

    async def hold_usage(self, run_id: str, token: int, hold_id: str, usage: dict[str, Any]) -> None:
        await self._write(layers_q.hold_usage, run_id, token, hold_id, dumps(usage))

    async def release_hold(self, hold_id: str) -> None:
        await self._write(layers_q.release_hold, hold_id)

    async def lost_holds(self, run_id: str, token: int) -> list[dict[str, Any]]:
        return [loads(u) for u in await self._read(layers_q.lost_holds, run_id, token)]

    async def cut_calls(
        self, *, run_id: str | None = None, since: float = 0.0, until: float | None = None
    ) -> list[CutCall]:
        return await self._read(layers_q.cut_calls, run_id, since, until)

    # --- run events ------------------------------------------------------------------------------

    async def append_run_events(self, events: Sequence[NewRunEvent]) -> None:
        if events:
            await self._write(events_sql.sqlite_append, events)

    def submit_run_events(self, events: Sequence[NewRunEvent]) -> asyncio.Future[None]:
        """`append_run_events` queued into this loop turn's write batch at once (no await), so
        the events commit with the journal write queued next to them."""
        return self._ensure_open()[0].submit(events_sql.sqlite_append, events)

    async def read_run_events(
        self, run_id: str, *, after: int = 0, limit: int = 500
    ) -> list[RunEventRecord]:
        return await self._read(events_sql.sqlite_read, run_id, after, limit)

    # --- trust layer -----------------------------------------------------------------------------

    async def put_trust_action(self, action: TrustActionRecord) -> TrustActionRecord:
        return await self._write(layers_q.put_trust_action, action)

    async def get_trust_action(self, action_id: str) -> TrustActionRecord | None:
        return await self._read(layers_q.get_trust_action, action_id)

    async def list_trust_actions(
        self,
        *,
        status: str | None = None,
        agent: str | None = None,
        category: str | None = None,
        run_id: str | None = None,
        outcome: str | None = None,
        since: float | None = None,
        limit: int = 10_000,
    ) -> list[TrustActionRecord]:
        filters = (("status", status), ("agent", agent), ("category", category),
                   ("run_id", run_id), ("outcome", outcome))
        return await self._read(layers_q.list_trust_actions, filters, since, limit)

    async def decide_trust_action(
        self,
        action_id: str,
        *,
        status: str,
        decided_by: str | None,
        decided_at: float,
        final_args: dict[str, Any] | None,
        final_digest: str | None,
        edited: bool,
        reason: str | None,
        signal: tuple[str, Any] | None,
    ) -> TrustActionRecord | None:
        decided = await self._write(
            layers_q.decide_trust_action,
            action_id,
            (status, decided_by, decided_at, final_args, final_digest, edited, reason),
            signal,
        )
        if decided is not None and signal is not None:
            self._notify()
        return decided

    async def set_trust_outcome(self, action_id: str, outcome: str) -> None:
        await self._write(layers_q.set_trust_outcome, action_id, outcome)

    async def add_ring_change(self, change: RingChangeRecord) -> RingChangeRecord:
        return await self._write(layers_q.add_ring_change, change)

    async def list_ring_changes(
        self, *, agent: str | None = None, category: str | None = None
    ) -> list[RingChangeRecord]:
        return await self._read(layers_q.list_ring_changes, agent, category)

    # --- interfaces: principals and the audit trail --------------------------------------------

    async def add_principal(self, principal: PrincipalRecord) -> bool:
        return await self._write(sa.add_principal, principal)

    async def get_principal(self, name: str) -> PrincipalRecord | None:
        return await self._read(sa.get_principal, name)

    async def principal_by_token(self, token_hash: str) -> PrincipalRecord | None:
        return await self._read(sa.principal_by_token, token_hash)

    async def list_principals(self) -> list[PrincipalRecord]:
        return await self._read(sa.list_principals)

    async def has_principals(self) -> bool:
        return await self._read(sa.has_principals)

    async def revoke_principal(self, name: str, revoked_at: float) -> bool:
        return await self._write(sa.revoke_principal, name, revoked_at)

    async def add_audit(self, entry: AuditRecord) -> AuditRecord:
        return await self._write(sa.add_audit, entry)

    async def list_audit(
        self,
        *,
        principal: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        filters = (("principal", principal), ("action", action), ("target", target))
        return await self._read(sa.list_audit, filters, since, limit)

LIVENESS_PROBE_SECONDS = 0.1
"""How often (at most) a claim probes the liveness locks of the owners holding runs."""


def _claim_one(
    conn: sqlite3.Connection,
    run_id: str,
    owner: str,
    lease_seconds: float,
    locks: LockFiles | None,
) -> Claim | None:
    """`claim_one`, taking the run over at once if its owner is observed dead."""
    dead: Collection[str] = ()
    if locks is not None:
        row = conn.execute(
            "SELECT lease_owner FROM runs WHERE id = ? AND status = 'running'", (run_id,)
        ).fetchone()
        if row is not None and row[0] and row[0].endswith(LIVE_MARK) and row[0] != owner:
            dead = locks.dead([row[0]])
    return q.claim_one(conn, run_id, owner, lease_seconds, dead)


def _claim_runs(
    conn: sqlite3.Connection,
    owner: str,
    workflows: tuple[tuple[str, str], ...],
    limit: int,
    lease_seconds: float,
    executing: Collection[str] | None,
    probe: Callable[[list[str]], set[str]] | None,
) -> list[Claim]:
    """A claim that first probes, inside the claim's transaction, which marked owners holding
    runs are dead (see "Liveness" in base.py)."""
    dead: Collection[str] = ()
    if probe is not None:
        owners = q.marked_owners(conn, owner)
        dead = probe(owners) if owners else ()
    return q.claim_runs(conn, owner, workflows, limit, lease_seconds, executing, dead)


def _shrink_memory(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA shrink_memory")


def _enable_wal(conn: sqlite3.Connection, path: str) -> None:
    """Switch the file to WAL (a persistent setting: only its first opener changes it).

    Processes opening a fresh file at the same moment (two workers started together) can get
    SQLITE_BUSY from the switch without SQLite's busy handler being consulted, so it is retried
    here for as long as the busy timeout would have waited.
    """
    deadline = time.monotonic() + 30.0
    delay = 0.005
    while True:
        try:
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise StoreError(
                    f"cannot switch {path} to WAL mode: {exc}; another process holds it "
                    "locked — check for a stuck tether process on this file"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _claim_with_queues(
    conn: sqlite3.Connection,
    owner: str,
    workflows: tuple[tuple[str, str], ...],
    limit: int,
    lease_seconds: float,
    executing: Collection[str] | None,
    probe: Callable[[list[str]], set[str]] | None,
) -> list[Claim]:
    """The ordinary claim (with its liveness probe), then runs of named queues within their
    limits (queues_sql.py)."""
    claims = _claim_runs(conn, owner, workflows, limit, lease_seconds, executing, probe)
    return claims + qs.claim_queued(conn, owner, workflows, limit - len(claims), lease_seconds)
