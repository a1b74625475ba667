"""Store rules for leases, run against every backend: no self-takeover, renewals that say which
runs they renewed, and stalls (takeovers without progress) as the evidence for poison runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tether.store import open_store
from tether.store.base import Claim, NewRun, StepRecord, Store

WF = (("wf", "1"),)
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


def new(run_id: str) -> NewRun:
    return NewRun(id=run_id, workflow="wf", version="1", input={})


def step(run_id: str, seq: int) -> StepRecord:
    return StepRecord(run_id=run_id, seq=seq, name="s", kind="step", status="completed")


async def expired(store: Store, run_id: str) -> None:
    """Wait until the run's lease has run out."""
    deadline = time.monotonic() + 10
    while True:
        run = await store.get_run(run_id)
        assert run is not None and run.lease_expires is not None
        if run.lease_expires < time.time() - 0.01:
            return
        assert time.monotonic() < deadline, "the lease never expired"
        await asyncio.sleep(0.02)


async def test_a_claimer_never_takes_over_a_run_it_holds_itself(store: Store) -> None:
    await store.create_run(new("r"))
    [held] = await store.claim_runs("w1:aa", WF, limit=5, lease_seconds=0.2)
    await expired(store, "r")
    # Its own lease ran out (a renewal delayed by an outage), but it may still be executing.
    assert await store.claim_runs("w1:aa", WF, limit=5, lease_seconds=5) == []
    assert await store.claim_run("r", "w1:aa", lease_seconds=5) is None
    run = await store.get_run("r")
    assert run is not None and run.fencing == held.token and run.lease_owner == "w1:aa"
    # It can still renew it: nobody took it over.
    beat = await store.heartbeat("w1:aa", 5, runs=["r"])
    assert beat.renewed_ids == {"r"}
    # Any other owner does take an expired lease over.
    await store.heartbeat("w1:aa", 0.2, runs=["r"])
    await expired(store, "r")
    [taken] = await store.claim_runs("w2:bb", WF, limit=5, lease_seconds=5)
    assert taken.recovered and taken.run.lease_owner == "w2:bb"


async def test_a_claim_takes_back_runs_leased_to_it_that_it_does_not_execute(
    store: Store,
) -> None:
    for run_id in ("busy", "lost"):
        await store.create_run(new(run_id))
    [busy] = await store.claim_runs("w1", WF, limit=1, lease_seconds=30, executing=[])
    # A claim whose answer is lost: the runs are leased to w1, which never heard of them.
    claimed = await store.claim_runs("w1", WF, limit=5, lease_seconds=30, executing=[busy.run.id])
    assert [c.run.id for c in claimed] == ["lost"], "a claim took a run its claimer executes"
    [lost] = claimed
    # The retry (or the next claim) names what w1 executes, and gets the stray back at once,
    # live lease and all, as a claim: no recovery, a new token.
    taken = await store.claim_runs("w1", WF, limit=5, lease_seconds=30, executing=[busy.run.id])
    assert [c.run.id for c in taken] == [lost.run.id], "a claim took a run its claimer executes"
    [again] = taken
    assert again.run.id == lost.run.id and not again.recovered
    assert again.token == lost.token + 1 and again.run.recoveries == 0
    # A run it executes is never taken from under it; without `executing`, nothing of its own.
    assert await store.claim_runs("w1", WF, limit=5, lease_seconds=30, executing=["busy", "lost"]) == []
    assert await store.claim_runs("w1", WF, limit=5, lease_seconds=30) == []
    # Nor does anyone else take a live lease.
    assert await store.claim_runs("w2", WF, limit=5, lease_seconds=30, executing=[]) == []


async def test_a_heartbeat_renews_only_the_runs_asked_and_says_which(store: Store) -> None:
    for run_id in ("a", "b", "c"):
        await store.create_run(new(run_id))
    await store.claim_runs("w1", WF, limit=3, lease_seconds=0.3)
    await expired(store, "c")
    taken = await store.claim_run("c", "w2", lease_seconds=30)
    assert taken is not None and taken.recovered

    beat = await store.heartbeat("w1", 30, runs=["a", "c"])
    # `c` was taken over: not renewed, so its old holder must not count on it any longer.
    assert beat.renewed_ids == {"a"} and beat.renewed == 1
    runs = {r: await store.get_run(r) for r in ("a", "b", "c")}
    assert runs["a"] is not None and (runs["a"].lease_expires or 0) > time.time() + 20
    assert runs["b"] is not None and (runs["b"].lease_expires or 0) < time.time()  # not asked
    assert runs["c"] is not None and runs["c"].lease_owner == "w2"
    assert (await store.heartbeat("w1", 30, runs=[])).renewed_ids == frozenset()
    # Without `runs`: every lease the owner still holds.
    assert (await store.heartbeat("w1", 30)).renewed_ids == {"a", "b"}


async def test_stalls_count_takeovers_without_progress_only(store: Store) -> None:
    await store.create_run(new("r"))
    owners = iter(f"w{i}" for i in range(20))

    async def take_over() -> Claim:
        await expired(store, "r")
        claim = await store.claim_run("r", next(owners), lease_seconds=0.2)
        assert claim is not None and claim.recovered
        return claim

    [first] = await store.claim_runs(next(owners), WF, limit=1, lease_seconds=0.2)
    assert first.stalls == 0
    held = await take_over()
    assert held.stalls == 1  # its holder journaled nothing
    seen: list[int] = []
    for seq in (1, 2, 3):  # three holders each journal a step, then die
        assert await store.write_step("r", held.token, step("r", seq))
        held = await take_over()
        seen.append(held.stalls)
    assert seen == [1, 1, 1], "a takeover after progress counts the first stall only"
    for expected in (2, 3):  # holders that die without journaling anything
        held = await take_over()
        assert held.stalls == expected
    assert held.run.recoveries == 6
    # A claim after progress (here after a release) starts the count again.
    assert await store.write_step("r", held.token, step("r", 4))
    assert await store.release_run("r", held.token)
    [again] = await store.claim_runs("w-next", WF, limit=1, lease_seconds=0.2)
    assert again.stalls == 0 and not again.recovered
