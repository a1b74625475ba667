"""What only the PostgreSQL store does: concurrent migrations, NOTIFY wake-ups across
processes, riding out dropped connections, and giving up with `StoreUnavailable`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

import tether
from tests.pg import postgres_base_url, postgres_schema_url, sessions
from tether.errors import StoreUnavailable, UserError
from tether.store.base import NewRun, StepRecord
from tether.store.migrate import migration_files
from tether.store.postgres import PostgresStore, parse_postgres_url

pytestmark = pytest.mark.timeout(90)
WF = (("wf", "1"),)


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_schema_url() as url:
        yield url


@pytest.fixture
def app_url(pg_url: str) -> str:
    """Connections tagged with an application_name, so a test can kill exactly them."""
    return pg_url + "&application_name=" + pg_url.rsplit("%3D", 1)[-1]


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(pg_url)
    await s.open()
    yield s
    await s.close()


def terminate(application_name: str) -> int:
    with psycopg.connect(postgres_base_url(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application_name,),
        ).fetchall()
    return len(rows)


def test_url_options_are_split_from_libpq_options() -> None:
    conninfo, pool_max, retry = parse_postgres_url(
        "postgresql://u@h:5432/db?options=-csearch_path%3Dx&pool_max_size=3&retry_seconds=2.5"
    )
    assert (pool_max, retry) == (3, 2.5)
    assert "pool_max_size" not in conninfo
    assert "retry_seconds" not in conninfo
    assert "search_path" in conninfo
    with pytest.raises(UserError, match="pool_max_size"):
        parse_postgres_url("postgresql://u@h/db?pool_max_size=lots")


async def test_many_stores_migrating_at_once_apply_each_migration_once(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(6)]
    await asyncio.gather(*(s.open() for s in stores))
    async with await psycopg.AsyncConnection.connect(parse_postgres_url(pg_url)[0]) as conn:
        cur = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        versions = [r[0] for r in await cur.fetchall()]
    assert versions == [m[0] for m in migration_files("postgres")]
    # Re-opening migrates nothing and works.
    await stores[0].create_run(NewRun(id="r", workflow="wf", version="1", input={}))
    for s in stores:
        await s.close()


async def test_notify_wakes_a_waiting_worker_in_another_process(
    store: PostgresStore, app_url: str
) -> None:
    other = PostgresStore(app_url)  # a separate pool and LISTEN connection: another host
    try:
        await other.open()
        await other.wait_for_work(0.01)  # start its listener
        await until_listening(app_url.rsplit("=", 1)[-1])
        for name, make_runnable in (
            ("create", lambda: store.create_run(NewRun(id="n1", workflow="wf", version="1", input={}))),
            ("signal", lambda: _wake_by_signal(store)),
        ):
            # wait_for_work does not poll: only a NOTIFY (or the hour) ends this wait.
            waiter = asyncio.create_task(other.wait_for_work(3600))
            await make_runnable()
            try:
                await asyncio.wait_for(waiter, 20)
            except TimeoutError:
                pytest.fail(f"{name}: the other store was never notified")
    finally:
        await other.close()


async def until_listening(application_name: str, timeout: float = 10.0) -> None:
    """Poll until a session of that application has issued its LISTEN."""
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(postgres_base_url(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                "AND query LIKE 'LISTEN %%'",
                (application_name,),
            ).fetchone()
        if row and row[0]:
            return
        assert time.monotonic() < deadline, "the LISTEN connection never came up"
        await asyncio.sleep(0.02)


async def until_blocked_on_a_lock(application_name: str, timeout: float = 10.0) -> None:
    """Poll until a session of that application waits for a row lock."""
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(postgres_base_url(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                "AND wait_event_type = 'Lock'",
                (application_name,),
            ).fetchone()
        if row and row[0]:
            return
        assert time.monotonic() < deadline, "no statement of the zombie waited for the takeover"
        await asyncio.sleep(0.02)


async def until_lease_lapsed(store: PostgresStore, run_id: str, timeout: float = 10.0) -> None:
    """Poll until the run's lease has run out (its holder is as good as dead)."""
    deadline = time.monotonic() + timeout
    while True:
        run = await store.get_run(run_id)
        assert run is not None and run.lease_expires is not None
        if time.time() > run.lease_expires:
            return
        assert time.monotonic() < deadline, f"the lease of {run_id} never ran out"
        await asyncio.sleep(0.02)


async def _wake_by_signal(store: PostgresStore) -> None:
    [claim] = await store.claim_runs("w", WF, limit=1, lease_seconds=5)
    await store.suspend_run(claim.run.id, claim.token, wake_at=None, waiting_for="go")
    await store.send_signal(claim.run.id, "go", 1)


async def test_store_rides_out_killed_connections(app_url: str) -> None:
    s = PostgresStore(app_url)
    name = app_url.rsplit("=", 1)[-1]
    try:
        await s.create_run(NewRun(id="r", workflow="wf", version="1", input={}))
        [claim] = await s.claim_runs("w", WF, limit=1, lease_seconds=30)
        await s.wait_for_work(0.01)  # starts the LISTEN connection
        deadline = time.monotonic() + 5
        while sessions(name) < 2:
            assert time.monotonic() < deadline, "the LISTEN connection never came up"
            await asyncio.sleep(0.02)
        assert terminate(name) >= 2  # the pooled and the LISTEN connection
        from tether.store.base import StepRecord

        ok = await s.write_step(
            "r", claim.token, StepRecord(run_id="r", seq=1, name="s", kind="step", status="completed")
        )
        assert ok
        assert terminate(name) >= 1
        assert len(await s.load_steps("r")) == 1
        assert terminate(name) >= 1
        assert await s.finish_run("r", claim.token, status="succeeded", output=1)
        run = await s.get_run("r")
        assert run is not None
        assert run.status == "succeeded"
    finally:
        await s.close()


async def test_unreachable_database_raises_store_unavailable_in_bounded_time() -> None:
    s = PostgresStore("postgresql://postgres@127.0.0.1:9/test?retry_seconds=0.5&connect_timeout=1")
    with pytest.raises(StoreUnavailable, match="unreachable"):
        # Gives up after retry_seconds instead of hanging (how long it takes: bench/).
        await asyncio.wait_for(s.get_run("x"), 30)
    await s.close()


def test_runs_survive_connections_killed_mid_run(app_url: str) -> None:
    """pg_terminate_backend of every connection of a working worker, over and over: every run
    still finishes, each step is journaled once, nothing is stranded."""
    app = tether.App(app_url, lease_seconds=2)
    name = app_url.rsplit("=", 1)[-1]
    executions: dict[tuple[str, int], int] = {}
    journaled: set[tuple[str, int]] = set()
    rerun_after_journaled: list[tuple[str, int]] = []
    real_write = app.store.write_step

    async def write_step(run_id: str, token: int, step: StepRecord, **kwargs: Any) -> bool:
        written = await real_write(run_id, token, step, **kwargs)
        if written and step.status == "completed":
            journaled.add((run_id, step.seq))
        return written

    app.store.write_step = write_step  # type: ignore[method-assign]

    @app.step
    async def work(i: int) -> int:
        step = tether.current_step()
        key = (step.run_id, step.seq)
        if key in journaled:  # at-least-once, but never again once its result is journaled
            rerun_after_journaled.append(key)
        executions[key] = executions.get(key, 0) + 1
        await asyncio.sleep(0.05)
        return i

    @app.workflow
    async def chain(ctx: tether.Context, steps: int) -> int:
        return sum([await work(i) for i in range(steps)])

    async def main() -> tuple[int, list[str]]:
        ids = [(await app.start_async("chain", {"steps": 10})).id for _ in range(20)]
        stop = asyncio.Event()
        worker = asyncio.create_task(app.run_worker_async(concurrency=20, stop=stop))
        kills = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = await app.store.list_runs(status="succeeded", limit=100)
            if len(runs) == len(ids):
                break
            kills += await asyncio.to_thread(terminate, name)
            await asyncio.sleep(0.1)
        stop.set()
        await worker
        return kills, ids

    try:
        kills, ids = asyncio.run(main())
        assert kills >= 10  # several rounds, each killing the pool and LISTEN connections
        for run_id in ids:
            info = app.get_run(run_id)
            assert info.status == "succeeded", (run_id, info.status, info.error)
            assert info.output == sum(range(10))
            assert [s.seq for s in info.steps] == list(range(1, 11))
        assert set(executions) == {(r, seq) for r in ids for seq in range(1, 11)}
        # A step may run again when a kill lost its result, never once it was journaled.
        assert rerun_after_journaled == []
    finally:
        app.close()


def test_a_loop_that_used_the_store_can_end(pg_url: str) -> None:
    """`asyncio.run(...)` of store calls returns: no background task of the store outlives the
    work and keeps a finished loop from closing (a script calling `asyncio.run` several times)."""
    import subprocess
    import sys

    code = (
        "import asyncio, sys\n"
        "from tether.store.postgres import PostgresStore\n"
        "from tether.store.base import NewRun\n"
        "s = PostgresStore(sys.argv[1])\n"
        "asyncio.run(s.open())\n"
        "asyncio.run(s.create_run(NewRun(id='r', workflow='wf', version='1', input={})))\n"
        "assert asyncio.run(s.get_run('r')).status == 'queued'\n"
        "asyncio.run(s.wait_for_work(0.05))\n"
        "print('done')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, pg_url], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "done"


async def test_a_search_path_naming_no_schema_is_explained(pg_url: str) -> None:
    from tests.pg import with_search_path
    from tether.errors import StoreError

    s = PostgresStore(with_search_path(postgres_base_url(), "no_such_schema_here"))
    with pytest.raises(StoreError, match="CREATE SCHEMA"):
        await s.open()
    await s.close()


async def test_a_write_racing_a_takeover_waits_for_it_and_is_fenced(app_url: str) -> None:
    """A zombie's writes sent while another worker's takeover is committing: a fence that
    read the run rows as of the statement's start would let them land; share-locking the rows
    makes them wait for the takeover, see the new token and write nothing."""
    zombie = PostgresStore(app_url)
    await zombie.open()
    try:
        for run_id in ("r1", "r2", "r3"):
            await zombie.create_run(NewRun(id=run_id, workflow="wf", version="1", input=None))
        claims = {c.run.id: c.token for c in await zombie.claim_runs("zombie", WF, limit=3, lease_seconds=30)}
        assert sorted(claims) == ["r1", "r2", "r3"]
        conninfo = parse_postgres_url(app_url.rsplit("&application_name=", 1)[0])[0]
        async with await psycopg.AsyncConnection.connect(conninfo) as takeover:
            await takeover.execute(
                "UPDATE runs SET fencing = fencing + 1, lease_owner = 'fresh' WHERE id = ANY(%s)",
                (["r1", "r2", "r3"],),
            )
            # One write goes alone, the next two as one multi-row statement; plus a signal.
            writes = asyncio.gather(
                *(
                    zombie.write_step(run_id, token, StepRecord(run_id, 1, "s", "step", "completed"))
                    for run_id, token in sorted(claims.items())
                ),
                zombie.consume_signal("r1", claims["r1"], StepRecord("r1", 2, "go", "signal", "waiting")),
            )
            await until_blocked_on_a_lock(app_url.rsplit("=", 1)[-1])
            assert not writes.done(), "the zombie's writes did not wait for the takeover"
            await takeover.commit()
        assert await asyncio.wait_for(writes, 10) == [False, False, False, None]
        assert [await zombie.load_steps(run_id) for run_id in ("r1", "r2", "r3")] == [[], [], []]
    finally:
        await zombie.close()


async def test_a_signal_resent_after_a_lost_acknowledgement_is_stored_once(pg_url: str) -> None:
    """The store retries a send whose connection dropped after the commit; the retry carries
    the same key, so the mailbox holds one signal, not two (a stale second "approve" would be
    consumed by the run's next wait for it)."""
    from tether.store import postgres_sql as q

    store = PostgresStore(pg_url)
    await store.open()
    try:
        await store.create_run(NewRun(id="r1", workflow="wf", version="1", input=None))
        async with await psycopg.AsyncConnection.connect(
            parse_postgres_url(pg_url)[0], autocommit=True
        ) as conn:
            first = await q.send_signal(conn, "r1", "approve", {"ok": True}, "k1")
            retry = await q.send_signal(conn, "r1", "approve", {"ok": True}, "k1")
            other = await q.send_signal(conn, "r1", "approve", {"ok": False}, "k2")
        assert first[0] is not None and retry[0] is not None and other[0] is not None
        assert retry[1], "a retry that finds its first attempt wakes workers again"
        assert not other[1]
        assert [s.payload for s in await store.list_signals("r1")] == [{"ok": True}, {"ok": False}]
    finally:
        await store.close()


async def test_claims_survive_a_connection_lost_while_loading_their_journals(pg_url: str) -> None:
    """The claim commits, then its journals are read in a second statement; if the connection
    drops in between, the claims are still handed over (the engine loads the journals itself)
    instead of being stranded until their leases expire."""
    from tether.store import postgres_journal_sql as q

    store = PostgresStore(pg_url)
    await store.open()
    try:
        await store.create_run(NewRun(id="r1", workflow="wf", version="1", input=None))
        [first] = await store.claim_runs("w1", WF, limit=1, lease_seconds=0.2)
        assert await store.write_step("r1", first.token, StepRecord("r1", 1, "s", "step", "completed"))
        await until_lease_lapsed(store, "r1")  # the next claim resumes a journaled run

        async with await psycopg.AsyncConnection.connect(
            parse_postgres_url(pg_url)[0], autocommit=True
        ) as conn:
            real_execute = conn.execute

            async def execute(query: object, *args: object, **kwargs: object) -> object:
                if "FROM steps WHERE run_id = ANY" in str(query):
                    raise psycopg.OperationalError("connection lost")
                return await real_execute(query, *args, **kwargs)  # type: ignore[arg-type]

            conn.execute = execute  # type: ignore[method-assign]
            [claim] = await q.claim_runs(conn, "w2", WF, 1, 30.0)
        assert claim.run.id == "r1" and claim.recovered and claim.has_journal
        assert claim.journal is None  # not loaded: the engine will load it
        run = await store.get_run("r1")
        assert run is not None and run.lease_owner == "w2"

        # Normally the journal comes with the claim.
        await store.create_run(NewRun(id="r2", workflow="wf", version="1", input=None))
        [first] = await store.claim_runs("w1", WF, limit=1, lease_seconds=0.2)
        assert await store.write_step("r2", first.token, StepRecord("r2", 1, "s", "step", "completed", output=7))
        await until_lease_lapsed(store, "r2")
        [again] = await store.claim_runs("w3", WF, limit=1, lease_seconds=30)
        assert again.journal is not None
        assert [(s.seq, s.output) for s in again.journal] == [(1, 7)]
    finally:
        await store.close()


async def test_starts_and_signals_of_one_loop_turn_each_get_their_own_answer(
    store: PostgresStore,
) -> None:
    """Starts and signals submitted together are applied as one multi-row statement per kind;
    every caller still gets the answer for its own run: a new run, the existing run for a
    reused id, a woken run, a run left waiting for another name, no run at all."""
    for run_id in ("w1", "w2"):
        await store.create_run(NewRun(id=run_id, workflow="wf", version="1", input=None))
    claims = await store.claim_runs("me", WF, limit=2, lease_seconds=30)
    for claim in claims:
        await store.suspend_run(claim.run.id, claim.token, wake_at=None, waiting_for="go")

    starts = [NewRun(id=f"n{i:02}", workflow="wf", version="1", input={"i": i})
              for i in range(40)]
    reused = NewRun(id="w1", workflow="wf", version="1", input={"new": True})
    created, signalled = await asyncio.gather(  # all submitted in one loop turn
        asyncio.gather(*(store.create_run(new) for new in [*starts, reused])),
        asyncio.gather(
            store.send_signal("w1", "go", {"n": 1}),
            store.send_signal("w2", "other", {"n": 2}),
            store.send_signal("nope", "go", None),
            store.send_signal("n05", "go", {"n": 3}),
        ),
    )
    woken, unwoken, missing, fresh = signalled
    for new, (run, token, made) in zip(starts, created, strict=False):
        assert (run.id, run.input, run.status, token, made) == (new.id, new.input, "queued",
                                                                 None, True)
    run, _, made = created[-1]
    assert (run.id, run.input, made) == ("w1", None, False)  # the existing run, unchanged
    assert woken is not None and (woken.id, woken.status) == ("w1", "queued")
    assert unwoken is not None and (unwoken.id, unwoken.status) == ("w2", "waiting")
    assert missing is None
    assert fresh is not None and fresh.id == "n05"  # started in the same turn, then signalled
    assert [s.payload for s in await store.list_signals("w1")] == [{"n": 1}]
    assert [s.payload for s in await store.list_signals("n05")] == [{"n": 3}]
    assert await store.get_run("nope") is None


def test_a_runs_step_and_finished_events_take_no_rows_or_statements_of_their_own(
    pg_url: str,
) -> None:
    """A step's events are read from its journal row and the finished event is appended by the
    finish: a three-step run stores two event rows (its start and its end), and its stream
    still shows every event, in order, once."""
    app = tether.App(pg_url)

    @app.step()
    async def add(x: int) -> int:
        return x + 1

    @app.workflow(name="three")
    async def three(ctx: tether.Context) -> int:
        return await add(await add(await add(0)))

    try:
        info = app.run("three")
        events = list(tether.RunHandle(app, info.id).events(follow=False))
        with psycopg.connect(pg_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT kind FROM run_events WHERE run_id = %s ORDER BY id", (info.id,)
            ).fetchall()
    finally:
        app.close()
    assert [r[0] for r in rows] == ["run_started", "finished"]
    assert [(e.kind, e.seq) for e in events] == [
        ("run_started", None),
        ("step_started", 1), ("step_completed", 1),
        ("step_started", 2), ("step_completed", 2),
        ("step_started", 3), ("step_completed", 3),
        ("finished", None)]
    assert events[-1].data == {"status": "succeeded"}
    ids = [e.id for e in events]
    assert ids == sorted(set(ids))


async def test_no_two_transactions_in_flight_hold_positions_of_one_run() -> None:
    """Event ids are taken at insert and seen at commit: a second write taking positions in a
    run's stream waits until the first one's transaction is done, while other runs' writes
    go meanwhile."""
    from tether.store.postgres_commit import GroupCommit, LoopState, Write

    loop = asyncio.get_running_loop()
    release = asyncio.Event()
    started: list[str] = []

    async def apply(state: LoopState, batch: list[Write], events: Any) -> None:
        started.append(",".join(f"{w.run_id}:{w.step[2].seq if w.step else '-'}" for w in batch))
        if batch[0].run_id == "x" and len(started) == 1:
            await release.wait()
        for write in batch:
            write.result = True

    state = LoopState(loop=loop, pool=None, ready=loop.create_future())
    commits = GroupCommit(apply)

    def step(run_id: str, seq: int) -> Write:
        rec = StepRecord(run_id=run_id, seq=seq, name="s", kind="step", status="completed")
        return Write(run_id, None, step=(run_id, 1, rec), position=True)

    first = asyncio.create_task(commits.submit(state, step("x", 1)))
    await asyncio.sleep(0)
    second = asyncio.create_task(commits.submit(state, step("x", 2)))
    other = asyncio.create_task(commits.submit(state, step("y", 1)))
    await asyncio.wait_for(other, 5)
    assert started == ["x:1", "y:1"]  # x's second write held back while its first is in flight
    release.set()
    assert await asyncio.wait_for(asyncio.gather(first, second), 5) == [True, True]
    assert started == ["x:1", "y:1", "x:2"]


async def test_a_failed_batch_retried_write_by_write_keeps_each_runs_event_order() -> None:
    """A batch whose shared transaction fails is applied again write by write. A run's events
    that rode in it were emitted before its journal write, which takes the next positions in
    the run's stream: they are stored ahead of that write on the retry path too."""
    from tether.store.base import NewRunEvent
    from tether.store.postgres_commit import GroupCommit, LoopState, Write

    loop = asyncio.get_running_loop()
    release = asyncio.Event()
    stored: list[str] = []  # what committed, in commit order

    async def apply(state: LoopState, batch: list[Write], events: Any) -> None:
        if not batch and not stored and not release.is_set():
            await release.wait()  # hold the first events in flight: the next ones queue
        if len(batch) > 1 or any(w.run_id == "bad" for w in batch):
            raise RuntimeError("this write breaks its transaction")
        stored.extend(f"event {e.run_id}" for e in events)
        for write in batch:
            stored.append(f"step {write.run_id}")
            write.result = True

    state = LoopState(loop=loop, pool=None, ready=loop.create_future())
    commits = GroupCommit(apply)

    def step(run_id: str) -> Write:
        rec = StepRecord(run_id=run_id, seq=1, name="s", kind="step", status="completed")
        return Write(run_id, None, step=(run_id, 1, rec), position=True)

    def event(run_id: str) -> list[NewRunEvent]:
        return [NewRunEvent(run_id=run_id, kind="run_started", at=0.0, key=f"{run_id}:started")]

    first = commits.submit_events(state, event("z"))
    for _ in range(3):
        await asyncio.sleep(0)  # z's events go alone and wait in flight
    riding = commits.submit_events(state, event("x") + event("bad"))
    good = asyncio.create_task(commits.submit(state, step("x")))
    bad = asyncio.create_task(commits.submit(state, step("bad")))
    await asyncio.sleep(0)
    release.set()  # x's and bad's writes go as one batch, carrying their events, and fail
    assert await asyncio.wait_for(good, 5) is True
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(bad, 5)
    await asyncio.wait_for(asyncio.gather(first, riding), 5)
    assert stored.index("event x") < stored.index("step x"), stored


async def test_suspensions_of_one_loop_turn_share_a_statement_and_keep_their_guarantees(
    store: PostgresStore,
) -> None:
    """Runs suspending together are suspended by one statement after their rows are locked:
    a run whose mailbox already holds the signal it waits for stays runnable, a fenced-off run
    is not touched, the others wait."""
    for run_id in ("r1", "r2", "r3"):
        await store.create_run(NewRun(id=run_id, workflow="wf", version="1", input=None))
    claims = {c.run.id: c for c in await store.claim_runs("w1", WF, limit=3, lease_seconds=30)}
    await store.send_signal("r1", "go", {"early": True})
    # The first goes alone (an idle loop's write is applied at once), the others as one batch.
    outcomes = await asyncio.gather(
        store.suspend_run("r2", claims["r2"].token, wake_at=None, waiting_for=["go", "stop"]),
        store.suspend_run("r1", claims["r1"].token, wake_at=None, waiting_for="go"),
        store.suspend_run("r3", claims["r3"].token + 1, wake_at=None, waiting_for="go"),
        store.suspend_run("r4", 1, wake_at=None, waiting_for="go"),
    )
    assert outcomes == ["waiting", "queued", None, None]
    runs = {r: await store.get_run(r) for r in ("r1", "r2", "r3")}
    assert runs["r1"] is not None and runs["r1"].status == "queued"
    assert runs["r2"] is not None and runs["r2"].status == "waiting"
    assert runs["r3"] is not None and runs["r3"].status == "running"
    # The waiting run wakes on either name.
    woken = await store.send_signal("r2", "stop", None)
    assert woken is not None and woken.status == "queued"


async def test_reads_of_one_loop_turn_each_get_their_own_run(store: PostgresStore) -> None:
    """Reads asked while one is on its way are read together in one statement; each caller
    gets its own run (or None), also when asking twice for one id."""
    for run_id in ("r1", "r2", "r3"):
        await store.create_run(
            NewRun(id=run_id, workflow="wf", version="1", input={"n": run_id})
        )
    ids = ["r2", "r1", "missing", "r3", "r1"]
    runs = await asyncio.gather(*(store.get_run(run_id) for run_id in ids))
    assert [None if r is None else (r.id, r.input) for r in runs] == [
        ("r2", {"n": "r2"}), ("r1", {"n": "r1"}), None, ("r3", {"n": "r3"}),
        ("r1", {"n": "r1"})]
