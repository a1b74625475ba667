"""Spend reservations in the store, on every backend: concurrent reservers on two store
connections (two workers, as far as the store knows) never pass a label limit together; a
reservation of a holder that died counts as spent until the window passes it; settling moves
spend from reserved to journaled without a gap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tether.store import open_store
from tether.store.base import NewRun, SpendWindow, StepRecord, Store

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
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


def window(max_usd: float, *, label: str = "tenant", value: str = "acme") -> SpendWindow:
    return SpendWindow(label, value, max_usd, since=time.time() - 3600,
                       description=f"{label}={value} at most ${max_usd:g} per hour")


async def held_run(store: Store, run_id: str, *, lease: float = 30.0,
                   labels: dict[str, str] | None = None) -> int:
    """A running run labelled tenant=acme, held by this test; returns its fencing token."""
    new = NewRun(id=run_id, workflow="wf", version="1", input={},
                 labels=labels if labels is not None else {"tenant": "acme"})
    _, token, created = await store.create_run(new, owner=f"owner-{run_id}", lease_seconds=lease)
    assert created and token is not None
    return token


async def test_concurrent_reservers_on_two_connections_never_pass_the_limit(
    store: Store, other: Store
) -> None:
    tokens = {f"r{i}": await held_run(store, f"r{i}") for i in range(24)}
    limit = window(1.0)

    async def reserve(i: int) -> bool:
        db = store if i % 2 else other
        run_id = f"r{i}"
        verdict = await db.reserve_spend(run_id, tokens[run_id], f"{run_id}:1", 0.1, [limit])
        return verdict is None

    granted = await asyncio.gather(*(reserve(i) for i in range(24)))
    assert sum(granted) == 10  # 10 x $0.10 fit in $1.00; the 11th would pass it
    refused = await store.reserve_spend("r0", tokens["r0"], "r0:2", 0.1, [limit])
    assert refused is not None
    assert refused.reserved == pytest.approx(1.0) and refused.spent == 0.0
    assert refused.window.value == "acme"
    # Another label value has its own room.
    other_label = window(1.0, value="globex")
    assert await store.reserve_spend("r0", tokens["r0"], "r0:3", 0.1, [other_label]) is None


async def test_a_reservation_settles_into_the_journal_without_a_gap(store: Store) -> None:
    token = await held_run(store, "a")
    limit = window(1.0)
    assert await store.reserve_spend("a", token, "a:1:t", 0.6, [limit]) is None
    # The call's usage is journaled first, then the reservation released (what the engine does).
    now = time.time()
    written = await store.write_step("a", token, StepRecord(
        run_id="a", seq=1, name="m", kind="step", status="completed",
        started_at=now, finished_at=now, usage={"llm_calls": 1, "cost_usd": 0.5}))
    assert written
    both = await store.reserve_spend("a", token, "a:2:t", 0.3, [limit])
    assert both is not None and both.spent == pytest.approx(0.5)
    assert both.reserved == pytest.approx(0.6)  # counted twice for a moment, never zero times
    await store.release_spend("a:1:t")
    await store.release_spend("a:1:t")  # idempotent
    assert await store.reserve_spend("a", token, "a:2:t", 0.3, [limit]) is None
    # A retry of a reservation that was granted is granted again, not counted twice.
    assert await store.reserve_spend("a", token, "a:2:t", 0.3, [limit]) is None
    refused = await store.reserve_spend("a", token, "a:3:t", 0.3, [limit])
    assert refused is not None
    assert refused.spent + refused.reserved == pytest.approx(0.8)


async def test_a_dead_holders_reservation_counts_as_spent_until_the_window_passes_it(
    store: Store, other: Store
) -> None:
    # A holder that died mid-call may have had the call sent and billed; its takeover sends it
    # again. Expired with the lease (as it was), each kill freed a call's worth of room that
    # the re-sent call then used: a limit passed by one call per kill, measured from outside.
    dead = await held_run(store, "dead", lease=0.5)
    live = await held_run(store, "live")
    limit = window(1.0)
    assert await store.reserve_spend("dead", dead, "dead:1", 0.9, [limit]) is None
    await asyncio.sleep(0.6)  # no heartbeat: the lease runs out
    refused = await other.reserve_spend("live", live, "live:1", 0.5, [limit])
    assert refused is not None and refused.reserved == pytest.approx(0.9)
    # A window that starts after the dead call was made does not count it, and forgets it.
    later = SpendWindow("tenant", "acme", 1.0, since=time.time(), description="later")
    assert await other.reserve_spend("live", live, "live:2", 0.5, [later]) is None


async def take_over(other: Store) -> int:
    """Claim the one run whose lease ran out from `other` (worker ``w2``); its new token."""
    deadline = time.monotonic() + 10
    while True:
        claims = await other.claim_runs("w2", WF, limit=1, lease_seconds=30)
        if claims:
            return claims[0].token
        assert time.monotonic() < deadline, "the run was never taken over"
        await asyncio.sleep(0.05)


async def test_a_zombie_cannot_release_its_reservation_after_a_takeover(
    store: Store, other: Store
) -> None:
    zombie = await held_run(store, "z", lease=0.3)
    limit = window(1.0)
    assert await store.reserve_spend("z", zombie, "z:1", 0.6, [limit]) is None
    token = await take_over(other)
    assert token != zombie
    # The zombie's call may have been billed (its journal write will be refused): its hold
    # stays spent, and releasing it from the zombie changes nothing.
    await store.release_spend("z:1")
    refused = await other.reserve_spend("z", token, "z:1:new", 0.6, [limit])
    assert refused is not None and refused.reserved == pytest.approx(0.6)
    assert await other.reserve_spend("z", token, "z:1:new", 0.4, [limit]) is None
    await other.release_spend("z:1:new")  # the holder's own release still works
    assert await other.reserve_spend("z", token, "z:2:new", 0.4, [limit]) is None


async def test_every_window_must_fit_and_a_refusal_reserves_nothing(store: Store) -> None:
    token = await held_run(store, "m", labels={"tenant": "acme", "team": "sales"})
    tenant = window(1.0)
    team = window(0.5, label="team", value="sales")
    refused = await store.reserve_spend("m", token, "m:1", 0.6, [tenant, team])
    assert refused is not None and refused.window.label == "team"
    # Nothing was held under the tenant either.
    assert await store.reserve_spend("m", token, "m:2", 1.0, [tenant]) is None


async def test_a_runs_budget_holds_outlive_a_dead_holder_and_only_its_holder_releases(
    store: Store, other: Store
) -> None:
    first = await held_run(store, "h", lease=0.3)
    await store.hold_usage("h", first, "h:3:1", {"llm_calls": 1, "cost_usd": 0.2})
    await store.hold_usage("h", first, "h:3:1", {"llm_calls": 1, "cost_usd": 0.2})  # a retry
    assert await store.lost_holds("h", first) == []  # its own holds are not lost
    token = await take_over(other)
    await store.release_hold("h:3:1")  # the old holder's release changes nothing now
    assert await other.lost_holds("h", token) == [{"llm_calls": 1, "cost_usd": 0.2}]
    await other.hold_usage("h", token, f"h:3:{token}", {"llm_calls": 1})
    await other.release_hold(f"h:3:{token}")  # the holder's own release works
    assert await other.lost_holds("h", token) == [{"llm_calls": 1, "cost_usd": 0.2}]


async def test_the_calls_a_lost_holder_left_in_flight_are_listed_once_each(
    store: Store, other: Store
) -> None:
    # What `tether show` and the cost report read: the calls cut by a crash, with the worst
    # case each was held at — a hold's whole usage, else a spend reservation's cost.
    first = await held_run(store, "c", lease=0.3)
    limit, team = window(5.0), window(5.0, label="team", value="sales")
    await store.hold_usage("c", first, f"c:3:{first}", {"llm_calls": 1, "cost_usd": 0.2,
                                                         "output_tokens": 100})
    assert await store.reserve_spend("c", first, f"c:3:{first}", 0.2, [limit]) is None
    assert await store.reserve_spend("c", first, f"c:4:{first}", 0.3, [limit, team]) is None
    assert await store.cut_calls(run_id="c") == []  # in flight with a live holder: not cut
    token = await take_over(other)
    await other.hold_usage("c", token, f"c:3:{token}", {"llm_calls": 1})  # the re-send
    cut = await other.cut_calls(run_id="c")
    assert [(c.seq, c.token, c.usage) for c in cut] == [
        (3, first, {"llm_calls": 1, "cost_usd": 0.2, "output_tokens": 100}),
        (4, first, {"llm_calls": 1, "cost_usd": 0.3}),  # two limit keys, one call
    ]
    assert [c.run_id for c in await other.cut_calls()] == ["c", "c"]
    assert await other.cut_calls(run_id="elsewhere") == []
    assert await other.cut_calls(since=time.time() + 1) == []
    assert await other.cut_calls(until=cut[0].created_at) == []
