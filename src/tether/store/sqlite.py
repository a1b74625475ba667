"""The embedded store: one SQLite file in WAL mode, shared by any number of worker processes.

Writes are group-committed per event-loop iteration (see `_Connection`): each caller learns its
outcome only after the commit, a single sequential run pays one commit per step, and two hundred
concurrent runs share commits. Reads use a second connection, so they never wait behind a
commit.

Durability: by default ``synchronous=NORMAL`` — a committed step survives a process crash
(``kill -9``), but the last few transactions can be lost on power loss or an OS crash. Pass
``?synchronous=full`` in the URL to fsync on every commit.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from tether.errors import StoreError, UserError
from tether.store.base import (
    FINISHED_STATUSES,
    Claim,
    Heartbeat,
    NewRun,
    RunRecord,
    SignalRecord,
    StepRecord,
)

T = TypeVar("T")
_RUN_COLUMNS = (
    "id, workflow, version, status, input, output, error, labels, budget, parent_id, "
    "created_at, updated_at, started_at, finished_at, wake_at, waiting_for, lease_owner, "
    "lease_expires, fencing, recoveries, cancel_requested, progress"
)
_STEP_COLUMNS = (
    "run_id, seq, name, kind, status, input, output, error, attempts, started_at, finished_at, "
    "wake_at, usage, meta"
)
_FINISHED_SQL = "('" + "','".join(sorted(FINISHED_STATUSES)) + "')"
_HELD = "id = ? AND fencing = ? AND status = 'running'"
_HELD_LIVE = _HELD + " AND cancel_requested = 0"


# One encoder for every write: json.dumps with non-default separators builds a new encoder on
# each call, which showed up in every journaled step.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _dumps(value: Any) -> str | None:
    return None if value is None else _ENCODER.encode(value)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def run_from_row(row: Sequence[Any]) -> RunRecord:
    return RunRecord(
        id=row[0],
        workflow=row[1],
        version=row[2],
        status=row[3],
        input=_loads(row[4]),
        output=_loads(row[5]),
        error=_loads(row[6]),
        labels=_loads(row[7]) or {},
        budget=_loads(row[8]),
        parent_id=row[9],
        created_at=row[10],
        updated_at=row[11],
        started_at=row[12],
        finished_at=row[13],
        wake_at=row[14],
        waiting_for=row[15],
        lease_owner=row[16],
        lease_expires=row[17],
        fencing=row[18],
        recoveries=row[19],
        cancel_requested=bool(row[20]),
        progress=_loads(row[21]),
    )


def step_from_row(row: Sequence[Any]) -> StepRecord:
    return StepRecord(
        run_id=row[0],
        seq=row[1],
        name=row[2],
        kind=row[3],
        status=row[4],
        input=_loads(row[5]),
        output=_loads(row[6]),
        error=_loads(row[7]),
        attempts=row[8],
        started_at=row[9],
        finished_at=row[10],
        wake_at=row[11],
        usage=_loads(row[12]),
        meta=_loads(row[13]),
    )


def step_params(run_id: str, step: StepRecord) -> tuple[Any, ...]:
    return (
        run_id,
        step.seq,
        step.name,
        step.kind,
        step.status,
        _dumps(step.input),
        _dumps(step.output),
        _dumps(step.error),
        step.attempts,
        step.started_at,
        step.finished_at,
        step.wake_at,
        _dumps(step.usage),
        _dumps(step.meta),
    )


_UPSERT_STEP = f"""
INSERT INTO steps ({_STEP_COLUMNS})
SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
WHERE EXISTS (SELECT 1 FROM runs WHERE {_HELD_LIVE})
ON CONFLICT (run_id, seq) DO UPDATE SET
    name = excluded.name, kind = excluded.kind, status = excluded.status,
    input = excluded.input, output = excluded.output, error = excluded.error,
    attempts = excluded.attempts, started_at = excluded.started_at,
    finished_at = excluded.finished_at, wake_at = excluded.wake_at,
    usage = excluded.usage, meta = excluded.meta
"""


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


class _Connection:
    """One SQLite connection shared by the event loops of a process, guarded by a lock.

    Reads run inline. Writes are *group-committed on the caller's loop*: every write submitted
    during one loop iteration is queued, and a callback scheduled with ``call_soon`` applies
    the queue in one ``BEGIN IMMEDIATE`` transaction before any caller is told its outcome.
    A lone sequential run pays one commit per step and no thread hop; two hundred concurrent
    runs share one commit per iteration. A write that raises is undone alone (the batch is
    replayed with a savepoint per write), so write functions must only touch the connection.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._conn = connect()
        self._lock = threading.Lock()
        self._batches: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        self._batches_lock = threading.Lock()

    def call_sync(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            return fn(self._conn, *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            return fn(self._conn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._batches_lock:
            batch = self._batches.get(loop)
            if batch is None:
                batch = self._batches[loop] = []
                loop.call_soon(self._flush, loop)
            batch.append((fn, args, future))
        return await future

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
        return outcomes


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
        self._writer: _Connection | None = None
        self._reader: _Connection | None = None
        self._open_lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self._waiters_lock = threading.Lock()

    # --- lifecycle -----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA busy_timeout = 30000")
        if not self._memory:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        return conn

    def _ensure_open(self) -> tuple[_Connection, _Connection]:
        if self._writer is not None and self._reader is not None:
            return self._writer, self._reader
        with self._open_lock:
            if self._writer is None:
                writer = _Connection(self._connect)
                writer.call_sync(_migrate_in_transaction)
                self._reader = writer if self._memory else _Connection(self._connect)
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
        result = await self._write(_create_run, new, owner, lease_seconds)
        if result[2] and owner is None:
            self._notify()
        return result

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await self._read(_get_run, run_id)

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        labels: dict[str, str] | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        return await self._read(_list_runs, status, workflow, labels, limit)

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        return await self._read(_load_steps, run_id)

    async def send_signal(self, run_id: str, name: str, payload: Any) -> RunRecord | None:
        run = await self._write(_send_signal, run_id, name, payload)
        if run is not None and run.status == "queued":
            self._notify()
        return run

    async def list_signals(self, run_id: str) -> list[SignalRecord]:
        return await self._read(_list_signals, run_id)

    async def cancel_run(self, run_id: str, reason: str) -> RunRecord | None:
        return await self._write(_cancel_run, run_id, reason)

    async def fork_run(self, source_id: str, from_seq: int, new: NewRun) -> RunRecord:
        run = await self._write(_fork_run, source_id, from_seq, new)
        self._notify()
        return run

    async def set_budget(self, run_id: str, budget: dict[str, Any] | None) -> RunRecord | None:
        run = await self._write(_set_budget, run_id, budget)
        if run is not None and run.status == "queued":
            self._notify()
        return run

    async def prune(self, finished_before: float) -> int:
        return await self._write(_prune, finished_before)

    # --- worker side ---------------------------------------------------------------------------

    async def claim_runs(
        self,
        owner: str,
        workflows: Sequence[tuple[str, str]],
        *,
        limit: int,
        lease_seconds: float,
    ) -> list[Claim]:
        if limit <= 0 or not workflows:
            return []
        return await self._write(_claim_runs, owner, tuple(workflows), limit, lease_seconds)

    async def claim_run(self, run_id: str, owner: str, *, lease_seconds: float) -> Claim | None:
        return await self._write(_claim_one, run_id, owner, lease_seconds)

    async def heartbeat(
        self,
        owner: str,
        lease_seconds: float,
        progress: Mapping[str, dict[str, Any] | None] | None = None,
    ) -> Heartbeat:
        return await self._write(_heartbeat, owner, lease_seconds, progress)

    async def next_wake(self) -> float | None:
        return await self._read(_next_wake)

    async def write_step(self, run_id: str, token: int, step: StepRecord) -> bool:
        return await self._write(_write_step, run_id, token, step)

    async def consume_signal(
        self, run_id: str, token: int, step: StepRecord
    ) -> SignalRecord | None:
        return await self._write(_consume_signal, run_id, token, step)

    async def suspend_run(
        self, run_id: str, token: int, *, wake_at: float | None, waiting_for: str | None
    ) -> str | None:
        status = await self._write(_suspend_run, run_id, token, wake_at, waiting_for)
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
    ) -> bool:
        return await self._write(_finish_run, run_id, token, status, output, error)

    async def release_run(self, run_id: str, token: int) -> bool:
        released = await self._write(_release_run, run_id, token)
        if released:
            self._notify()
        return released

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
        return await self._read(_load_window, since, until)

    async def label_spend(self, key: str, value: str, since: float) -> tuple[float, int]:
        return await self._read(_label_spend, key, value, since)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# --- migrations --------------------------------------------------------------------------------


def migration_files(dialect: str) -> list[tuple[int, str, str]]:
    """``(number, name, sql)`` for every numbered migration of a dialect, in order."""
    folder = resources.files("tether.store") / "migrations" / dialect
    found: list[tuple[int, str, str]] = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def _split_statements(sql: str) -> list[str]:
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer)
            buffer = ""
    if buffer.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in buffer.splitlines()
    ):
        raise StoreError("migration ends with an incomplete SQL statement")
    return statements


def _migrate_in_transaction(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        _migrate(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _migrate(conn: sqlite3.Connection) -> None:
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    pending = [m for m in migration_files("sqlite") if m[0] > current]
    if not pending:
        return
    for number, name, sql in pending:
        # Re-read inside the transaction: another process may have migrated meanwhile.
        if conn.execute("PRAGMA user_version").fetchone()[0] >= number:
            continue
        try:
            for statement in _split_statements(sql):
                conn.execute(statement)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite migration {name} failed: {exc}") from exc
        conn.execute(f"PRAGMA user_version = {number}")


# --- statements, run on the store's threads ------------------------------------------------------


def _get_run(conn: sqlite3.Connection, run_id: str) -> RunRecord | None:
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else run_from_row(row)


def _create_run(
    conn: sqlite3.Connection, new: NewRun, owner: str | None, lease_seconds: float
) -> tuple[RunRecord, int | None, bool]:
    now = time.time()
    claimed = owner is not None
    # One statement for the common case (a new id); an existing run is read only on conflict.
    row = conn.execute(
        f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES "
        "(?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?, ?, NULL, ?, NULL, ?, ?, ?, 0, 0, NULL) "
        f"ON CONFLICT (id) DO NOTHING RETURNING {_RUN_COLUMNS}",
        (
            new.id,
            new.workflow,
            new.version,
            "running" if claimed else "queued",
            _dumps(new.input),
            _dumps(new.labels or {}),
            _dumps(new.budget),
            new.parent_id,
            now,
            now,
            now if claimed else None,
            None if claimed else (new.wake_at if new.wake_at is not None else now),
            owner,
            now + lease_seconds if claimed else None,
            1 if claimed else 0,
        ),
    ).fetchone()
    if row is None:
        existing = _get_run(conn, new.id)
        assert existing is not None
        return existing, None, False
    return run_from_row(row), (1 if claimed else None), True


def _list_runs(
    conn: sqlite3.Connection,
    status: str | None,
    workflow: str | None,
    labels: dict[str, str] | None,
    limit: int,
) -> list[RunRecord]:
    where: list[str] = []
    params: list[Any] = []
    if status:
        where.append("status = ?")
        params.append(status)
    if workflow:
        where.append("workflow = ?")
        params.append(workflow)
    for key, value in (labels or {}).items():
        where.append("json_extract(labels, ?) = ?")
        params.extend([f'$."{key}"', value])
    sql = f"SELECT {_RUN_COLUMNS} FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
    params.append(limit)
    return [run_from_row(row) for row in conn.execute(sql, params)]


def _load_steps(conn: sqlite3.Connection, run_id: str) -> list[StepRecord]:
    rows = conn.execute(
        f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id = ? ORDER BY seq", (run_id,)
    )
    return [step_from_row(row) for row in rows]


def _send_signal(
    conn: sqlite3.Connection, run_id: str, name: str, payload: Any
) -> RunRecord | None:
    if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
        return None
    now = time.time()
    conn.execute(
        "INSERT INTO signals (run_id, name, payload, created_at) VALUES (?, ?, ?, ?)",
        (run_id, name, _dumps(payload), now),
    )
    conn.execute(
        "UPDATE runs SET status = 'queued', wake_at = ?, updated_at = ? "
        "WHERE id = ? AND status = 'waiting' AND waiting_for = ?",
        (now, now, run_id, name),
    )
    return _get_run(conn, run_id)


def _list_signals(conn: sqlite3.Connection, run_id: str) -> list[SignalRecord]:
    rows = conn.execute(
        "SELECT id, run_id, name, payload, created_at, consumed_seq FROM signals "
        "WHERE run_id = ? ORDER BY id",
        (run_id,),
    )
    return [SignalRecord(r[0], r[1], r[2], _loads(r[3]), r[4], r[5]) for r in rows]


def _cancel_run(conn: sqlite3.Connection, run_id: str, reason: str) -> RunRecord | None:
    run = _get_run(conn, run_id)
    if run is None or run.status in FINISHED_STATUSES:
        return run
    now = time.time()
    error = _dumps({"type": "RunCancelled", "message": reason})
    if run.status == "running":
        conn.execute(
            "UPDATE runs SET cancel_requested = 1, error = ?, updated_at = ? WHERE id = ?",
            (error, now, run_id),
        )
    else:
        conn.execute(
            "UPDATE runs SET status = 'cancelled', error = ?, finished_at = ?, updated_at = ?, "
            "wake_at = NULL, waiting_for = NULL WHERE id = ?",
            (error, now, now, run_id),
        )
    return _get_run(conn, run_id)


def _fork_run(conn: sqlite3.Connection, source_id: str, from_seq: int, new: NewRun) -> RunRecord:
    run, _, _ = _create_run(conn, new, None, 0.0)
    conn.execute(
        f"INSERT INTO steps ({_STEP_COLUMNS}) SELECT ?, seq, name, kind, status, input, output, "
        "error, attempts, started_at, finished_at, wake_at, usage, meta FROM steps "
        "WHERE run_id = ? AND seq < ? AND status = 'completed'",
        (new.id, source_id, from_seq),
    )
    return run


def _prune(conn: sqlite3.Connection, finished_before: float) -> int:
    doomed = (
        f"SELECT id FROM runs WHERE status IN {_FINISHED_SQL} "
        "AND finished_at IS NOT NULL AND finished_at < ?"
    )
    conn.execute(f"DELETE FROM steps WHERE run_id IN ({doomed})", (finished_before,))
    conn.execute(f"DELETE FROM signals WHERE run_id IN ({doomed})", (finished_before,))
    return conn.execute(f"DELETE FROM runs WHERE id IN ({doomed})", (finished_before,)).rowcount


def _claim_runs(
    conn: sqlite3.Connection,
    owner: str,
    workflows: tuple[tuple[str, str], ...],
    limit: int,
    lease_seconds: float,
) -> list[Claim]:
    now = time.time()
    names = sorted({name for name, _ in workflows})
    keys = sorted(f"{name}\x00{version}" for name, version in workflows)
    name_marks = ",".join("?" * len(names))
    key_marks = ",".join("?" * len(keys))
    runnable = (
        f"(version IS NULL AND workflow IN ({name_marks}) "
        f"OR workflow || char(0) || version IN ({key_marks}))"
    )
    rows = conn.execute(
        f"""
        SELECT id, status, workflow, version FROM (
            SELECT id, status, workflow, version, wake_at AS due FROM runs
             WHERE status = 'queued' AND wake_at <= ? AND {runnable}
            UNION ALL
            SELECT id, status, workflow, version, wake_at AS due FROM runs
             WHERE status = 'waiting' AND wake_at <= ? AND {runnable}
            UNION ALL
            SELECT id, status, workflow, version, lease_expires AS due FROM runs
             WHERE status = 'running' AND lease_expires < ? AND {runnable}
        ) ORDER BY due LIMIT ?
        """,
        (now, *names, *keys, now, *names, *keys, now, *names, *keys, limit),
    ).fetchall()
    latest = dict(workflows)
    return [
        _take(conn, run_id, status == "running", owner, lease_seconds, version or latest.get(workflow))
        for run_id, status, workflow, version in rows
    ]


def _take(
    conn: sqlite3.Connection,
    run_id: str,
    recovered: bool,
    owner: str,
    lease_seconds: float,
    version: str | None,
) -> Claim:
    now = time.time()
    row = conn.execute(
        f"""
        UPDATE runs SET status = 'running', lease_owner = ?, lease_expires = ?,
            fencing = fencing + 1, recoveries = recoveries + ?,
            version = coalesce(version, ?), started_at = coalesce(started_at, ?),
            updated_at = ?, wake_at = NULL, waiting_for = NULL
        WHERE id = ? RETURNING {_RUN_COLUMNS}
        """,
        (owner, now + lease_seconds, 1 if recovered else 0, version, now, now, run_id),
    ).fetchone()
    run = run_from_row(row)
    return Claim(run=run, token=run.fencing, recovered=recovered)


def _claim_one(
    conn: sqlite3.Connection, run_id: str, owner: str, lease_seconds: float
) -> Claim | None:
    now = time.time()
    row = conn.execute(
        "SELECT status FROM runs WHERE id = ? AND ("
        " (status IN ('queued', 'waiting') AND wake_at <= ?)"
        " OR (status = 'running' AND lease_expires < ?))",
        (run_id, now, now),
    ).fetchone()
    if row is None:
        return None
    return _take(conn, run_id, row[0] == "running", owner, lease_seconds, None)


def _set_budget(
    conn: sqlite3.Connection, run_id: str, budget: dict[str, Any] | None
) -> RunRecord | None:
    now = time.time()
    conn.execute(
        "UPDATE runs SET budget = ?, updated_at = ? WHERE id = ?", (_dumps(budget), now, run_id)
    )
    conn.execute(
        "UPDATE runs SET status = 'queued', wake_at = ? "
        "WHERE id = ? AND status = 'waiting' AND waiting_for = 'tether.budget'",
        (now, run_id),
    )
    return _get_run(conn, run_id)


def _heartbeat(
    conn: sqlite3.Connection,
    owner: str,
    lease_seconds: float,
    progress: Mapping[str, dict[str, Any] | None] | None,
) -> Heartbeat:
    renewed = conn.execute(
        "UPDATE runs SET lease_expires = ? WHERE lease_owner = ? AND status = 'running'",
        (time.time() + lease_seconds, owner),
    ).rowcount
    if progress:
        conn.executemany(
            "UPDATE runs SET progress = ? WHERE id = ? AND lease_owner = ?",
            [(_dumps(p), run_id, owner) for run_id, p in progress.items()],
        )
    cancelled = conn.execute(
        "SELECT id FROM runs WHERE lease_owner = ? AND status = 'running' "
        "AND cancel_requested = 1",
        (owner,),
    ).fetchall()
    return Heartbeat(renewed=renewed, cancel_requested=frozenset(r[0] for r in cancelled))


def _next_wake(conn: sqlite3.Connection) -> float | None:
    row = conn.execute(
        "SELECT min(t) FROM ("
        " SELECT min(wake_at) AS t FROM runs WHERE status = 'waiting' AND wake_at IS NOT NULL"
        " UNION ALL SELECT min(wake_at) FROM runs WHERE status = 'queued'"
        " UNION ALL SELECT min(lease_expires) FROM runs WHERE status = 'running')"
    ).fetchone()
    return row[0]


def _write_step(conn: sqlite3.Connection, run_id: str, token: int, step: StepRecord) -> bool:
    return conn.execute(_UPSERT_STEP, (*step_params(run_id, step), run_id, token)).rowcount == 1


def _consume_signal(
    conn: sqlite3.Connection, run_id: str, token: int, step: StepRecord
) -> SignalRecord | None:
    if conn.execute(f"SELECT 1 FROM runs WHERE {_HELD_LIVE}", (run_id, token)).fetchone() is None:
        return None
    row = conn.execute(
        "SELECT id, payload, created_at FROM signals "
        "WHERE run_id = ? AND name = ? AND consumed_seq IS NULL ORDER BY id LIMIT 1",
        (run_id, step.name),
    ).fetchone()
    if row is None:
        return None
    conn.execute("UPDATE signals SET consumed_seq = ? WHERE id = ?", (step.seq, row[0]))
    payload = _loads(row[1])
    completed = StepRecord(
        run_id=run_id,
        seq=step.seq,
        name=step.name,
        kind=step.kind,
        status="completed",
        input=step.input,
        output=payload,
        attempts=step.attempts,
        started_at=step.started_at,
        finished_at=step.finished_at,
        meta=step.meta,
    )
    conn.execute(_UPSERT_STEP, (*step_params(run_id, completed), run_id, token))
    return SignalRecord(row[0], run_id, step.name, payload, row[2], step.seq)


def _suspend_run(
    conn: sqlite3.Connection,
    run_id: str,
    token: int,
    wake_at: float | None,
    waiting_for: str | None,
) -> str | None:
    now = time.time()
    pending = waiting_for is not None and (
        conn.execute(
            "SELECT 1 FROM signals WHERE run_id = ? AND name = ? AND consumed_seq IS NULL LIMIT 1",
            (run_id, waiting_for),
        ).fetchone()
        is not None
    )
    status = "queued" if pending else "waiting"
    changed = conn.execute(
        "UPDATE runs SET status = ?, wake_at = ?, waiting_for = ?, lease_owner = NULL, "
        f"lease_expires = NULL, progress = NULL, updated_at = ? WHERE {_HELD_LIVE}",
        (status, now if pending else wake_at, waiting_for, now, run_id, token),
    ).rowcount
    return status if changed else None


def _finish_run(
    conn: sqlite3.Connection,
    run_id: str,
    token: int,
    status: str,
    output: Any,
    error: dict[str, Any] | None,
) -> bool:
    now = time.time()
    condition = _HELD if status == "cancelled" else _HELD_LIVE
    return (
        conn.execute(
            "UPDATE runs SET status = ?, output = ?, error = ?, finished_at = ?, updated_at = ?, "
            "lease_owner = NULL, lease_expires = NULL, wake_at = NULL, waiting_for = NULL, "
            "progress = NULL "
            f"WHERE {condition}",
            (status, _dumps(output), _dumps(error), now, now, run_id, token),
        ).rowcount
        == 1
    )


def _release_run(conn: sqlite3.Connection, run_id: str, token: int) -> bool:
    now = time.time()
    return (
        conn.execute(
            "UPDATE runs SET status = 'queued', lease_owner = NULL, lease_expires = NULL, "
            f"progress = NULL, wake_at = ?, updated_at = ? WHERE {_HELD}",
            (now, now, run_id, token),
        ).rowcount
        == 1
    )


# --- observe layer -------------------------------------------------------------------------------


# Runs active in a window: finished inside it (runs_finished index) or not finished yet (the
# status indexes). Two indexed branches instead of an OR that would scan every run.
_WINDOW_RUNS = (
    "SELECT {cols} FROM runs WHERE finished_at >= ? AND created_at < ? "
    "UNION ALL SELECT {cols} FROM runs WHERE status IN ('queued', 'running', 'waiting') "
    "AND created_at < ?"
)


def _load_window(
    conn: sqlite3.Connection, since: float, until: float | None
) -> list[tuple[RunRecord, list[StepRecord]]]:
    until = time.time() if until is None else until
    window = (since, until, until)
    runs = sorted(
        (run_from_row(row) for row in conn.execute(_WINDOW_RUNS.format(cols=_RUN_COLUMNS), window)),
        key=lambda run: (run.created_at, run.id),
    )
    journals: dict[str, list[StepRecord]] = {run.id: [] for run in runs}
    # Reports never read step inputs and outputs (model responses can be large): left out.
    rows = conn.execute(
        "SELECT s.run_id, s.seq, s.name, s.kind, s.status, NULL, NULL, s.error, s.attempts, "
        "s.started_at, s.finished_at, s.wake_at, s.usage, s.meta "
        f"FROM ({_WINDOW_RUNS.format(cols='id')}) w "
        "JOIN steps s ON s.run_id = w.id ORDER BY s.run_id, s.seq",
        window,
    )
    for row in rows:
        journal = journals.get(row[0])
        if journal is not None:  # a run created between the two reads is left out
            journal.append(step_from_row(row))
    return [(run, journals[run.id]) for run in runs]


def _label_spend(
    conn: sqlite3.Connection, key: str, value: str, since: float
) -> tuple[float, int]:
    row = conn.execute(
        "SELECT coalesce(sum(json_extract(s.usage, '$.cost_usd')), 0), "
        "coalesce(sum(json_extract(s.usage, '$.unpriced_calls')), 0) "
        "FROM (SELECT id, labels FROM runs WHERE finished_at >= ? UNION ALL "
        "SELECT id, labels FROM runs WHERE status IN ('queued', 'running', 'waiting')) r "
        "JOIN steps s ON s.run_id = r.id "
        "WHERE json_extract(r.labels, ?) = ? AND s.usage IS NOT NULL AND s.finished_at >= ?",
        (since, f'$."{key}"', value, since),
    ).fetchone()
    return float(row[0]), int(row[1])

