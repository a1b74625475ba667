"""The SQLite store's write path, on a real file: a lone write commits at once, concurrent
writes still share commits, instant steps still let other tasks run, and a failing write is
undone alone."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tests.integration.sequence_app import sequence_app
from tether.store.base import NewRun, NewRunEvent, StepRecord
from tether.store.sqlite import SQLiteStore


def _writer(app: tether.App) -> sqlite3.Connection:
    store = app.store
    assert isinstance(store, SQLiteStore)
    writer, _ = store._ensure_open()  # pyright: ignore[reportPrivateUsage]
    return writer._conn  # pyright: ignore[reportPrivateUsage]


class Commits:
    """Counts the COMMIT statements the store's write connection runs."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.count = 0
        self._conn = conn
        conn.set_trace_callback(self._seen)

    def _seen(self, statement: str) -> None:
        if statement.strip().upper() == "COMMIT":
            self.count += 1

    def close(self) -> None:
        self._conn.set_trace_callback(None)


@pytest.fixture
def app(sqlite_url: str) -> Iterator[tether.App]:
    app = sequence_app(sqlite_url)
    yield app
    app.close()


async def test_concurrent_runs_share_commits(app: tether.App) -> None:
    await app.run_async("sequence", {"steps": 1})  # the store is open
    commits = Commits(_writer(app))
    try:
        infos = await asyncio.gather(*(app.run_async("sequence", {"steps": 5}) for _ in range(50)))
    finally:
        commits.close()
    assert all(info.status == "succeeded" and len(info.steps) == 5 for info in infos)
    # 50 runs x (create + 5 steps + finish) = 350 writes; alone, each would be a commit.
    # Sharing: the first write of a loop iteration commits at once, the rest of that
    # iteration's writes together -- about two commits per iteration.
    assert commits.count < 350 / 5, commits.count


async def test_a_run_of_instant_steps_lets_other_tasks_run(app: tether.App) -> None:
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    info = await app.run_async("sequence", {"steps": 2000})
    during = ticks - before
    stop = True
    await task
    assert info.status == "succeeded"
    # The ticker is a second task of the loop, but writes nothing: the run's writes yield
    # at least every millisecond, and 2,000 commits take longer than 20 ms on any machine.
    assert during >= 20, during


async def test_a_lone_write_commits_before_it_returns(app: tether.App, sqlite_url: str) -> None:
    seen: list[int] = []

    @app.step
    async def look(i: int) -> int:
        # Another connection, as another process would: the previous step is already there.
        path = sqlite_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as other:
            (count,) = other.execute("SELECT count(*) FROM steps WHERE status = 'completed'").fetchone()
        seen.append(int(count))
        return i

    @app.workflow(name="looking")
    async def looking(ctx: tether.Context) -> int:
        for i in range(5):
            await look(i)
        return 5

    await app.run_async("sequence", {"steps": 0})
    await app.run_async("looking")
    assert seen == [0, 1, 2, 3, 4]


async def test_a_failing_write_is_undone_alone(app: tether.App) -> None:
    await app.run_async("sequence", {"steps": 0})
    store = app.store
    assert isinstance(store, SQLiteStore)

    def insert_then_fail(conn: sqlite3.Connection, marker: str) -> Any:
        conn.execute("INSERT INTO kv (key, value) VALUES (?, '1')", (marker,))
        raise RuntimeError("boom")

    def insert(conn: sqlite3.Connection, marker: str) -> str:
        conn.execute("INSERT INTO kv (key, value) VALUES (?, '1')", (marker,))
        return marker

    conn = _writer(app)
    conn.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT)")
    # Alone (committed at once) and in a shared batch: the failing write leaves nothing.
    with pytest.raises(RuntimeError, match="boom"):
        await store._write(insert_then_fail, "alone")  # pyright: ignore[reportPrivateUsage]
    results = await asyncio.gather(
        store._write(insert, "first"),  # pyright: ignore[reportPrivateUsage]
        store._write(insert_then_fail, "batched"),  # pyright: ignore[reportPrivateUsage]
        store._write(insert, "second"),  # pyright: ignore[reportPrivateUsage]
        return_exceptions=True,
    )
    assert results[0] == "first" and results[2] == "second"
    assert isinstance(results[1], RuntimeError)
    keys = {row[0] for row in conn.execute("SELECT key FROM kv")}
    assert keys == {"first", "second"}


async def test_a_run_commits_once_per_step_plus_its_start_and_end(app: tether.App) -> None:
    await app.run_async("sequence", {"steps": 1})
    commits = Commits(_writer(app))
    try:
        info = await app.run_async("sequence", {"steps": 5})
    finally:
        commits.close()
    # Created, five steps, ended -- the run's events ride in those transactions, its
    # `finished` event in the one that ends it.
    assert commits.count == 7, commits.count
    kinds = [event.kind for event in await app.run_events_async(info.id)]
    assert kinds == ["run_started"] + ["step_started", "step_completed"] * 5 + ["finished"]


async def test_an_event_appended_by_another_process_keeps_the_stream_in_order(
    app: tether.App, sqlite_url: str
) -> None:
    """Step rows take positions reserved ahead for their run; an event another process
    appends for the run meanwhile (its id past them) must still come before the steps
    journaled after it, so a reader resuming after that event misses none of them."""
    other = tether.App(sqlite_url)
    appended: list[int] = []

    @app.step
    async def mark(i: int) -> int:
        if i == 2:
            run_id = tether.current_step().run_id
            await other.store.append_run_events([NewRunEvent(
                run_id=run_id, kind="note", at=time.time(), seq=None, data={"from": "other"},
                key=None)])
            (event,) = [e for e in await other.run_events_async(run_id) if e.kind == "note"]
            appended.append(event.id)
        return i

    @app.workflow(name="marked")
    async def marked(ctx: tether.Context) -> int:
        for i in range(5):
            await mark(i)
        return 5

    try:
        info = await app.run_async("marked")
        events = await app.run_events_async(info.id)
        ids = [e.id for e in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
        after = await app.run_events_async(info.id, after=appended[0])
        assert [(e.kind, e.seq) for e in after] == [
            ("step_started", 3), ("step_completed", 3), ("step_started", 4),
            ("step_completed", 4), ("step_started", 5), ("step_completed", 5), ("finished", None),
        ]
    finally:
        other.close()


async def test_a_run_claimed_back_after_another_holder_keeps_its_steps_in_order(
    tmp_path: Path,
) -> None:
    """Holder A journals a step, loses the run to B, which journals two, and claims it back:
    A's reserved positions from its first claim are below B's, so its next step must not use
    them (positions are reserved per claim)."""
    url = f"sqlite:///{tmp_path / 'tether.db'}"
    a, b = SQLiteStore(url), SQLiteStore(url)
    try:
        _, token, _ = await a.create_run(
            NewRun(id="r1", workflow="w", version=None, input=None), owner="a",
            lease_seconds=0.05)
        assert token is not None

        def step(seq: int) -> StepRecord:
            now = time.time()
            return StepRecord(run_id="r1", seq=seq, name=f"s{seq}", kind="step",
                              status="completed", output=seq, attempts=1, started_at=now,
                              finished_at=now)

        assert await a.write_step("r1", token, step(1), events=True)
        await asyncio.sleep(0.1)
        claim = await b.claim_run("r1", "b", lease_seconds=0.05)
        assert claim is not None
        assert await b.write_step("r1", claim.token, step(2), events=True)
        assert await b.write_step("r1", claim.token, step(3), events=True)
        await asyncio.sleep(0.1)
        again = await a.claim_run("r1", "a", lease_seconds=5)
        assert again is not None
        assert await a.write_step("r1", again.token, step(4), events=True)
        completed = [r.seq for r in await a.read_run_events("r1", after=0, limit=100)
                     if r.kind == "step_completed"]
        assert completed == [1, 2, 3, 4]
    finally:
        await a.close()
        await b.close()
