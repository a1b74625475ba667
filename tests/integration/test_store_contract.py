"""The one Store contract, run against every backend (SQLite and PostgreSQL).

Each test talks to the store the way the engine does and asserts what the engine relies on:
idempotent creation, exclusive claims, fencing of every write, cancellation, the signal
mailbox with no lost wake-up, timers, lease takeover, fork, prune and version pinning.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tether.store import open_store
from tether.store.base import NewRun, StepRecord, Store

WF = (("wf", "1"),)
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def other(store_url: str) -> AsyncIterator[Store]:
    """A second store on the same database: another worker process, as far as the store knows."""
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


def new(run_id: str, *, version: str | None = "1", **kw: object) -> NewRun:
    return NewRun(id=run_id, workflow="wf", version=version, input={"x": 1}, **kw)  # type: ignore[arg-type]


def step(seq: int, name: str = "s", *, status: str = "completed", output: object = None) -> StepRecord:
    return StepRecord(run_id="", seq=seq, name=name, kind="step", status=status, output=output)


async def claim(store: Store, owner: str = "w1", lease: float = 10.0, limit: int = 10):
    return await store.claim_runs(owner, WF, limit=limit, lease_seconds=lease)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# --- creation --------------------------------------------------------------------------------------


async def test_create_is_idempotent_and_keeps_the_first_input(store: Store) -> None:
    run, token, created = await store.create_run(new("r1", labels={"team": "sales"}))
    assert (created, token, run.status, run.fencing) == (True, None, "queued", 0)
    assert run.input == {"x": 1}
    assert run.labels == {"team": "sales"}
    again, token2, created2 = await store.create_run(
        NewRun(id="r1", workflow="wf", version="1", input={"x": 2})
    )
    assert (created2, token2) == (False, None)
    assert again.input == {"x": 1}
    assert again.created_at == run.created_at


async def test_create_with_owner_is_claimed_at_once(store: Store) -> None:
    run, token, created = await store.create_run(new("r1"), owner="me", lease_seconds=5)
    assert created
    assert token == 1
    assert run.status == "running"
    assert run.lease_owner == "me"
    assert run.fencing == 1
    assert await claim(store) == []  # a live lease is not claimable


async def test_delayed_start_is_not_claimable_before_its_time(store: Store) -> None:
    await store.create_run(new("later", wake_at=time.time() + 0.4))
    assert await claim(store) == []
    await eventually(lambda: _claims_one(store, "later"))


async def _claims_one(store: Store, run_id: str) -> bool:
    claims = await claim(store)
    return [c.run.id for c in claims] == [run_id]


# --- claims ------------------------------------------------------------------------------------------


async def test_claim_sets_running_and_increments_the_token(store: Store) -> None:
    await store.create_run(new("r1"))
    [c] = await claim(store, "w1", lease=5)
    assert c.token == 1
    assert not c.recovered
    assert c.run.status == "running"
    assert c.run.lease_owner == "w1"
    assert c.run.lease_expires is not None
    assert c.run.lease_expires > time.time() + 3
    assert c.run.started_at is not None


async def test_two_concurrent_claimers_never_get_the_same_run(store: Store, other: Store) -> None:
    # Many small rounds: one round's two claims overlap only sometimes, twenty almost surely.
    for i in range(200):
        await store.create_run(new(f"r{i:03d}"))
    got: list[str] = []
    for _ in range(20):
        a, b = await asyncio.gather(claim(store, "a", limit=5), claim(other, "b", limit=5))
        got += [c.run.id for c in a + b]
    assert len(got) == len(set(got)) == 200
    assert await claim(store, "c") == []


async def test_claim_says_whether_the_run_has_a_journal_to_load(store: Store) -> None:
    await store.create_run(new("r1"))
    [c] = await claim(store, "w1", lease=0.2)
    assert not c.has_journal  # a run starting: nothing to replay
    assert await store.write_step("r1", c.token, step(1))

    async def taken_over() -> bool:
        claims = await claim(store, "w2")
        assert all(c.has_journal for c in claims)
        return len(claims) == 1

    await eventually(taken_over)


async def test_claim_respects_limit_and_due_order(store: Store) -> None:
    now = time.time()
    await store.create_run(new("second", wake_at=now - 1))
    await store.create_run(new("first", wake_at=now - 2))
    await store.create_run(new("third"))
    assert [c.run.id for c in await claim(store, limit=2)] == ["first", "second"]
    assert [c.run.id for c in await claim(store, limit=2)] == ["third"]


async def test_claim_run_takes_one_runnable_run_only(store: Store) -> None:
    await store.create_run(new("r1"))
    c = await store.claim_run("r1", "me", lease_seconds=5)
    assert c is not None
    assert c.token == 1
    assert await store.claim_run("r1", "you", lease_seconds=5) is None  # live lease
    assert await store.claim_run("missing", "me", lease_seconds=5) is None


# --- fencing ---------------------------------------------------------------------------------------------


async def test_every_write_is_fenced_after_a_takeover(store: Store, other: Store) -> None:
    await store.create_run(new("r1"))
    [old] = await claim(store, "zombie", lease=0.2)
    assert await store.write_step("r1", old.token, step(1, output="a"))

    async def taken_over() -> bool:
        return len(await claim(other, "fresh", lease=30)) == 1

    await eventually(taken_over)
    fresh = (await other.get_run("r1"))
    assert fresh is not None
    assert fresh.fencing == old.token + 1
    assert fresh.recoveries == 1

    # Every kind of write by the old holder changes nothing and says so.
    await other.send_signal("r1", "go", {"v": 1})
    assert not await store.write_step("r1", old.token, step(1, output="zombie"))
    assert not await store.write_step("r1", old.token, step(2, output="zombie"))
    assert await store.consume_signal("r1", old.token, step(3, "go")) is None
    assert await store.suspend_run("r1", old.token, wake_at=None, waiting_for="x") is None
    assert not await store.finish_run("r1", old.token, status="succeeded", output=1)
    assert not await store.finish_run("r1", old.token, status="cancelled")
    assert not await store.release_run("r1", old.token)

    steps = await store.load_steps("r1")
    assert [(s.seq, s.output) for s in steps] == [(1, "a")]
    run = await store.get_run("r1")
    assert run is not None
    assert run.status == "running"
    assert run.lease_owner == "fresh"
    assert [s.consumed_seq for s in await store.list_signals("r1")] == [None]
    # The new holder writes normally.
    assert await other.write_step("r1", fresh.fencing, step(2, output="b"))
    assert await other.finish_run("r1", fresh.fencing, status="succeeded", output="done")


async def test_write_step_upserts_its_entry(store: Store) -> None:
    await store.create_run(new("r1"))
    [c] = await claim(store)
    assert await store.write_step("r1", c.token, step(1, status="retrying"))
    assert await store.write_step(
        "r1",
        c.token,
        StepRecord(
            run_id="r1", seq=1, name="s", kind="step", status="completed", input={"a": [1]},
            output={"ok": True}, attempts=3, usage={"llm_calls": 1}, meta={"node": "n"},
        ),
    )
    [s] = await store.load_steps("r1")
    assert (s.status, s.attempts, s.output, s.input) == ("completed", 3, {"ok": True}, {"a": [1]})
    assert s.usage == {"llm_calls": 1}
    assert s.meta == {"node": "n"}



async def test_load_run_returns_the_run_with_its_journal_in_order(store: Store) -> None:
    assert await store.load_run("nope") is None
    _, token, _ = await store.create_run(new("r1"), owner="w1")
    assert token is not None
    loaded = await store.load_run("r1")
    assert loaded is not None and loaded[0].id == "r1" and loaded[1] == []
    for seq in (3, 1, 2):  # written out of order, read back by seq
        assert await store.write_step("r1", token, step(seq, output={"n": seq}))
    assert await store.finish_run("r1", token, status="succeeded", output=[1, "two"])
    loaded = await store.load_run("r1")
    assert loaded is not None
    got, steps = loaded
    assert (got.status, got.output, got.input, got.fencing) == ("succeeded", [1, "two"], {"x": 1}, token)
    assert got == await store.get_run("r1")
    assert steps == await store.load_steps("r1")
    assert [(s.seq, s.output) for s in steps] == [(1, {"n": 1}), (2, {"n": 2}), (3, {"n": 3})]

async def test_concurrent_writes_of_many_runs_each_get_their_own_answer(store: Store) -> None:
    for i in range(30):
        await store.create_run(new(f"r{i:02d}"))
    claims = await claim(store, limit=30)
    tokens = {c.run.id: c.token for c in claims}
    # Every other run is written with a stale token: those writes alone must fail.
    results = await asyncio.gather(
        *(
            store.write_step(run_id, token if i % 2 == 0 else token + 7, step(1, output=run_id))
            for i, (run_id, token) in enumerate(sorted(tokens.items()))
        )
    )
    assert results == [i % 2 == 0 for i in range(30)]
    for i, run_id in enumerate(sorted(tokens)):
        assert len(await store.load_steps(run_id)) == (1 if i % 2 == 0 else 0)


# --- cancel ----------------------------------------------------------------------------------------


async def test_cancel_queued_and_waiting_runs_at_once(store: Store) -> None:
    await store.create_run(new("q"))
    run = await store.cancel_run("q", "no longer needed")
    assert run is not None
    assert run.status == "cancelled"
    assert run.finished_at is not None
    assert run.error == {"type": "RunCancelled", "message": "no longer needed"}

    await store.create_run(new("w"))
    [c] = await claim(store)
    assert await store.suspend_run("w", c.token, wake_at=None, waiting_for="go") == "waiting"
    run = await store.cancel_run("w", "stop")
    assert run is not None
    assert run.status == "cancelled"
    assert run.waiting_for is None
    assert await store.cancel_run("missing", "x") is None


async def test_cancel_running_run_fences_its_live_writes(store: Store) -> None:
    await store.create_run(new("r"))
    [c] = await claim(store)
    run = await store.cancel_run("r", "stop it")
    assert run is not None
    assert run.status == "running"
    assert run.cancel_requested
    beat = await store.heartbeat("w1", 10)
    assert beat.cancel_requested == frozenset({"r"})
    assert not await store.write_step("r", c.token, step(1))
    assert not await store.finish_run("r", c.token, status="succeeded")
    assert await store.suspend_run("r", c.token, wake_at=None, waiting_for="x") is None
    assert await store.finish_run("r", c.token, status="cancelled", error=run.error)
    done = await store.get_run("r")
    assert done is not None
    assert done.status == "cancelled"
    assert done.lease_owner is None


async def test_cancel_finished_run_is_a_no_op(store: Store) -> None:
    await store.create_run(new("r"))
    [c] = await claim(store)
    assert await store.finish_run("r", c.token, status="succeeded", output=42)
    run = await store.cancel_run("r", "too late")
    assert run is not None
    assert run.status == "succeeded"
    assert run.output == 42


# --- signals ----------------------------------------------------------------------------------------


async def test_signal_sent_before_the_wait_is_kept_and_consumed_in_order(store: Store) -> None:
    await store.create_run(new("r"))
    [c] = await claim(store)
    await store.send_signal("r", "go", {"n": 1})
    await store.send_signal("r", "go", {"n": 2})
    await store.send_signal("r", "other", {"n": 0})
    # Suspending for a signal already in the mailbox leaves the run runnable.
    assert await store.suspend_run("r", c.token, wake_at=None, waiting_for="go") == "queued"
    [c2] = await claim(store)
    first = await store.consume_signal("r", c2.token, step(1, "go"))
    second = await store.consume_signal("r", c2.token, step(2, "go"))
    assert first is not None
    assert first.payload == {"n": 1}
    assert first.consumed_seq == 1
    assert second is not None
    assert second.payload == {"n": 2}
    assert await store.consume_signal("r", c2.token, step(3, "go")) is None
    steps = await store.load_steps("r")
    assert [(s.seq, s.status, s.output) for s in steps] == [
        (1, "completed", {"n": 1}),
        (2, "completed", {"n": 2}),
    ]
    assert [s.consumed_seq for s in await store.list_signals("r")] == [1, 2, None]


async def test_concurrent_consumes_of_many_runs_each_get_their_own_signal(store: Store) -> None:
    """Runs resuming together consume together (one statement on PostgreSQL): each gets the
    oldest signal of its own mailbox, a stale token gets nothing, an empty mailbox gets None,
    and a repeated consume at the same seq returns the same signal (a retried write)."""
    for i in range(12):
        await store.create_run(new(f"r{i:02d}"))
        await store.send_signal(f"r{i:02d}", "go", {"run": i, "n": 1})
        if i % 3 != 2:
            await store.send_signal(f"r{i:02d}", "go", {"run": i, "n": 2})
    await store.create_run(new("empty"))
    tokens = {c.run.id: c.token for c in await claim(store, limit=20)}
    ids = sorted(tokens)

    def token_of(run_id: str) -> int:
        return tokens[run_id] + (5 if run_id == "r07" else 0)  # r07: a stale holder

    got = await asyncio.gather(
        *(store.consume_signal(r, token_of(r), step(1, "go")) for r in ids)
    )
    by_run = dict(zip(ids, got, strict=True))
    assert by_run.pop("empty") is None
    assert by_run.pop("r07") is None
    for run_id, signal in by_run.items():
        assert signal is not None and signal.payload == {"run": int(run_id[1:]), "n": 1}
        assert signal.run_id == run_id and signal.consumed_seq == 1
    again = await asyncio.gather(*(store.consume_signal(r, tokens[r], step(1, "go")) for r in by_run))
    assert [s.payload if s else None for s in again] == [s.payload for s in by_run.values()]
    second = await asyncio.gather(*(store.consume_signal(r, tokens[r], step(2, "go")) for r in by_run))
    assert [s.payload["n"] if s else None for s in second] == [
        None if int(r[1:]) % 3 == 2 else 2 for r in by_run
    ]
    assert await store.load_steps("r07") == []
    assert [s.consumed_seq for s in await store.list_signals("r07")] == [None, None]
    [entry] = (await store.load_steps("r00"))[:1]
    assert (entry.seq, entry.status, entry.output) == (1, "completed", {"run": 0, "n": 1})


async def test_signal_wakes_a_waiting_run(store: Store) -> None:
    await store.create_run(new("r"))
    [c] = await claim(store)
    assert await store.suspend_run("r", c.token, wake_at=None, waiting_for="go") == "waiting"
    assert await claim(store) == []
    unrelated = await store.send_signal("r", "other", 1)
    assert unrelated is not None
    assert unrelated.status == "waiting"
    woken = await store.send_signal("r", "go", 2)
    assert woken is not None
    assert woken.status == "queued"
    [c2] = await claim(store)
    assert c2.token == c.token + 1
    assert not c2.recovered


async def test_signal_to_missing_or_finished_run(store: Store) -> None:
    assert await store.send_signal("missing", "go", 1) is None
    await store.create_run(new("r"))
    [c] = await claim(store)
    await store.finish_run("r", c.token, status="succeeded")
    run = await store.send_signal("r", "go", 1)
    assert run is not None
    assert run.status == "succeeded"


async def test_no_lost_wake_up_between_suspend_and_signal(store: Store, other: Store) -> None:
    """The worker suspends while a client signals, from another connection, in both orders
    and at once: the run must never be left waiting with its signal in the mailbox."""
    for i in range(25):
        run_id = f"race{i}"
        await store.create_run(new(run_id))
        [c] = await store.claim_runs("w", WF, limit=1, lease_seconds=10)
        status, _ = await asyncio.gather(
            store.suspend_run(run_id, c.token, wake_at=None, waiting_for="go"),
            other.send_signal(run_id, "go", i),
        )
        assert status in ("waiting", "queued")
        run = await store.get_run(run_id)
        assert run is not None
        assert run.status == "queued", f"{run_id} lost its wake-up"
        [again] = await store.claim_runs("w", WF, limit=1, lease_seconds=10)
        signal = await store.consume_signal(run_id, again.token, step(1, "go"))
        assert signal is not None
        assert signal.payload == i
        await store.finish_run(run_id, again.token, status="succeeded")


# --- timers, leases, heartbeats ---------------------------------------------------------------------


async def test_timer_makes_a_waiting_run_due(store: Store) -> None:
    await store.create_run(new("r"))
    [c] = await claim(store)
    wake = time.time() + 0.3
    assert await store.suspend_run("r", c.token, wake_at=wake, waiting_for=None) == "waiting"
    next_wake = await store.next_wake()
    assert next_wake is not None
    assert abs(next_wake - wake) < 0.01
    assert await claim(store) == []
    await eventually(lambda: _claims_one(store, "r"))
    assert time.time() >= wake - 0.05


async def test_signal_wait_with_timeout_wakes_on_either(store: Store) -> None:
    await store.create_run(new("r"))
    [c] = await claim(store)
    assert (
        await store.suspend_run("r", c.token, wake_at=time.time() + 60, waiting_for="go")
        == "waiting"
    )
    assert (await store.send_signal("r", "go", 1)).status == "queued"  # type: ignore[union-attr]


async def test_expired_lease_is_taken_over_and_counted(store: Store, other: Store) -> None:
    await store.create_run(new("r"))
    [c] = await claim(store, "dead", lease=0.2)
    assert await other.claim_runs("b", WF, limit=5, lease_seconds=5) == []

    async def taken() -> bool:
        claims = await other.claim_runs("b", WF, limit=5, lease_seconds=5)
        if claims:
            [got] = claims
            assert got.recovered
            assert got.token == c.token + 1
            assert got.run.recoveries == 1
        return bool(claims)

    await eventually(taken)
    [b] = [await other.get_run("r")]
    assert b is not None
    assert b.lease_owner == "b"
    # A release is not a recovery.
    assert await other.release_run("r", b.fencing)
    [c3] = await claim(store, "c")
    assert not c3.recovered
    assert c3.run.recoveries == 1


async def test_heartbeat_extends_every_lease_of_its_owner(store: Store) -> None:
    for i in range(3):
        await store.create_run(new(f"r{i}"))
    claims = await claim(store, "w1", lease=0.5)
    await store.create_run(new("x"))
    await store.claim_runs("w2", WF, limit=1, lease_seconds=0.5)
    beat = await store.heartbeat(
        "w1", 30, {"r0": {"seq": 3, "name": "s", "kind": "step"}, "r1": None}
    )
    assert beat.renewed == 3
    assert beat.cancel_requested == frozenset()
    for c in claims:
        run = await store.get_run(c.run.id)
        assert run is not None
        assert run.lease_expires is not None
        assert run.lease_expires > time.time() + 20
    r0 = await store.get_run("r0")
    assert r0 is not None
    assert r0.progress == {"seq": 3, "name": "s", "kind": "step"}
    # Only w2's run expires and is taken over.
    await eventually(lambda: _claims_one(store, "x"))


async def test_release_and_finish_clear_the_lease(store: Store) -> None:
    await store.create_run(new("r"))
    [c] = await claim(store)
    assert await store.release_run("r", c.token)
    run = await store.get_run("r")
    assert run is not None
    assert run.status == "queued"
    assert run.lease_owner is None
    [c2] = await claim(store)
    assert await store.finish_run("r", c2.token, status="failed", error={"type": "X", "message": "m"})
    run = await store.get_run("r")
    assert run is not None
    assert run.status == "failed"
    assert run.error == {"type": "X", "message": "m"}
    assert run.lease_owner is None
    assert run.finished_at is not None


# --- budget, fork, prune, listing, versions -----------------------------------------------------------


async def test_set_budget_requeues_a_run_parked_on_its_budget(store: Store) -> None:
    await store.create_run(new("r"))
    [c] = await claim(store)
    await store.suspend_run("r", c.token, wake_at=None, waiting_for="tether.budget")
    run = await store.set_budget("r", {"max_llm_calls": 10})
    assert run is not None
    assert run.status == "queued"
    assert run.budget == {"max_llm_calls": 10}
    assert await store.set_budget("missing", None) is None
    await store.create_run(new("idle"))
    idle = await store.set_budget("idle", {"max_cost_usd": 1.0})
    assert idle is not None
    assert idle.status == "queued"
    assert idle.budget == {"max_cost_usd": 1.0}


async def test_fork_copies_completed_entries_before_from_seq(store: Store) -> None:
    await store.create_run(new("src"))
    [c] = await claim(store)
    await store.write_step("src", c.token, step(1, output="a"))
    await store.write_step("src", c.token, step(2, status="failed"))
    await store.write_step("src", c.token, step(3, output="c"))
    await store.write_step("src", c.token, step(4, output="d"))
    forked = await store.fork_run("src", 4, new("copy", parent_id="src"))
    assert forked.status == "queued"
    assert forked.parent_id == "src"
    assert forked.fencing == 0
    assert [(s.seq, s.output) for s in await store.load_steps("copy")] == [(1, "a"), (3, "c")]
    assert len(await store.load_steps("src")) == 4
    [c2] = await claim(store)
    assert c2.run.id == "copy"


async def test_prune_deletes_old_finished_runs_with_journal_and_mailbox(store: Store) -> None:
    for run_id in ("old1", "old2", "live"):
        await store.create_run(new(run_id))
    for c in await claim(store, limit=3):
        await store.write_step(c.run.id, c.token, step(1))
        await store.send_signal(c.run.id, "s", 1)
        if c.run.id != "live":
            await store.finish_run(c.run.id, c.token, status="succeeded")
    await store.create_run(new("queued", wake_at=time.time() + 3600))
    cutoff = time.time() + 0.01
    while time.time() <= cutoff + 0.01:  # noqa: ASYNC110 - waiting on the wall clock itself
        await asyncio.sleep(0.005)
    await store.create_run(new("recent"))
    rc = await store.claim_run("recent", "w", lease_seconds=5)
    assert rc is not None
    await store.finish_run("recent", rc.token, status="failed")

    assert await store.prune(cutoff) == 2
    assert await store.get_run("old1") is None
    assert await store.get_run("old2") is None
    assert await store.load_steps("old1") == []
    assert await store.list_signals("old1") == []
    live = await store.get_run("live")
    assert live is not None
    assert len(await store.load_steps("live")) == 1
    assert len(await store.list_signals("live")) == 1
    assert await store.get_run("queued") is not None
    assert await store.get_run("recent") is not None
    assert await store.prune(cutoff) == 0


async def test_list_runs_filters_newest_first(store: Store) -> None:
    await store.create_run(new("a", labels={"team": "sales", "tier": "1"}))
    await store.create_run(new("b", labels={"team": "ops"}))
    await store.create_run(NewRun(id="c", workflow="other", version="1", input={}))
    await store.create_run(new("d", labels={"team": "sales"}))
    [cd] = await store.claim_runs("w", WF, limit=1, lease_seconds=5)  # oldest: a
    assert cd.run.id == "a"
    assert [r.id for r in await store.list_runs()] == ["d", "c", "b", "a"]
    assert [r.id for r in await store.list_runs(status="queued", workflow="wf")] == ["d", "b"]
    assert [r.id for r in await store.list_runs(labels={"team": "sales"})] == ["d", "a"]
    assert [r.id for r in await store.list_runs(labels={"team": "sales", "tier": "1"})] == ["a"]
    assert len(await store.list_runs(limit=2)) == 2


async def test_version_pinning(store: Store) -> None:
    await store.create_run(new("v1", version="1"))
    await store.create_run(new("v2", version="2"))
    await store.create_run(new("any", version=None))
    # A worker that only has version 2 never takes a run pinned to version 1; an unpinned run
    # is pinned to the version that claimed it.
    claims = await store.claim_runs("w2", (("wf", "2"),), limit=10, lease_seconds=5)
    got = {c.run.id: c.run.version for c in claims}
    assert got == {"v2": "2", "any": "2"}
    assert (await store.get_run("any")).version == "2"  # type: ignore[union-attr]
    [c1] = await store.claim_runs("w1", (("wf", "1"),), limit=10, lease_seconds=5)
    assert c1.run.id == "v1"
    assert c1.run.version == "1"
    # Unknown workflows are never claimed.
    await store.create_run(NewRun(id="z", workflow="zzz", version=None, input={}))
    assert await store.claim_runs("w", (("wf", "1"), ("wf", "2")), limit=10, lease_seconds=5) == []


async def test_wait_for_work_returns_on_new_work(store: Store) -> None:
    await asyncio.wait_for(store.wait_for_work(0.05), 20)  # nothing to do: ends at its timeout
    waiter = asyncio.create_task(store.wait_for_work(3600))  # no polling: only a wake-up ends it
    await asyncio.sleep(0)  # one turn of the loop: the waiter registers itself
    deadline = time.monotonic() + 20
    made = 0
    while not waiter.done():
        assert time.monotonic() < deadline, "new runs never woke the waiting worker"
        # PostgreSQL's LISTEN connection comes up in the background: a run created before it
        # listens wakes nobody, so keep making work until one wakes the waiter.
        await store.create_run(new(f"r{made}"))
        made += 1
        await asyncio.wait({waiter}, timeout=0.2)


# --- retention from the command line -----------------------------------------------------------------


def test_prune_command_deletes_only_old_finished_runs(store_url: str) -> None:
    from typer.testing import CliRunner

    import tether
    from tether.cli import prune as _prune  # noqa: F401 - registers the command
    from tether.cli.common import cli

    app = tether.App(store_url)

    @app.workflow
    async def quick(ctx: tether.Context) -> int:
        return 1

    @app.workflow
    async def waits(ctx: tether.Context) -> int:
        return await ctx.wait_for_signal("go")

    try:
        done = app.run("quick").id
        waiting = app.run("waits").id
        runner = CliRunner()
        command = ["prune"]  # the root callback (--version) makes commands go by name
        kept = runner.invoke(cli, [*command, "--older-than", "30d", "--store", store_url])
        assert kept.exit_code == 0, kept.output
        assert "pruned 0 run(s)" in kept.output
        gone = runner.invoke(cli, [*command, "--older-than", "0s", "--store", store_url, "--json"])
        assert gone.exit_code == 0, gone.output
        assert '"deleted": 1' in gone.output
        assert [r.id for r in app.list_runs()] == [waiting]
        assert done != waiting
        bad = runner.invoke(cli, [*command, "--older-than", "a month", "--store", store_url])
        assert bad.exit_code == 2
        assert "30d" in bad.output
    finally:
        app.close()


# --- observe layer ---------------------------------------------------------------------------------------


async def test_load_window_and_label_spend(store: Store) -> None:
    await store.create_run(new("old", labels={"team": "a"}))
    [old] = await claim(store)
    await store.finish_run("old", old.token, status="succeeded")
    cutoff = time.time() + 0.01
    while time.time() <= cutoff + 0.01:  # noqa: ASYNC110 - waiting for the wall clock itself
        await asyncio.sleep(0.005)
    await store.create_run(new("live", labels={"team": "a"}))
    await store.create_run(new("other", labels={"team": "b"}))
    for c in await claim(store, limit=2):
        usage = {"cost_usd": 0.25, "unpriced_calls": 1} if c.run.id == "live" else {"cost_usd": 9.0}
        await store.write_step(
            c.run.id,
            c.token,
            StepRecord(
                run_id=c.run.id, seq=1, name="m", kind="step", status="completed",
                input={"big": "x"}, output={"big": "y"}, finished_at=time.time(), usage=usage,
            ),
        )
    window = await store.load_window(cutoff)
    assert [run.id for run, _ in window] == ["live", "other"]
    [(_, journal), _] = window
    assert [(s.seq, s.usage, s.input, s.output) for s in journal] == [
        (1, {"cost_usd": 0.25, "unpriced_calls": 1}, None, None)
    ]
    assert [run.id for run, _ in await store.load_window(0.0)] == ["old", "live", "other"]
    assert await store.label_spend("team", "a", cutoff) == (0.25, 1)
    assert await store.label_spend("team", "c", 0.0) == (0.0, 0)
