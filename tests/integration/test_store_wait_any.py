"""The store side of waiting for the first of several signals, and the cancel-request read a
worker polls — run against every backend (the rules are in store/base.py)."""

from __future__ import annotations

import pytest

from tests.integration.test_store_contract import claim, new, other, store
from tether.store.base import StepRecord, Store

__all__ = ["other", "store"]  # fixtures, re-exported for pytest
pytestmark = pytest.mark.timeout(60)


def wait(seq: int, names: str = "approve|reject") -> StepRecord:
    return StepRecord(run_id="", seq=seq, name=names, kind="signal", status="waiting")


async def test_a_run_waiting_for_several_names_wakes_on_any_of_them(store: Store) -> None:
    for run_id in ("a", "b"):
        await store.create_run(new(run_id))
    claims = {c.run.id: c for c in await claim(store)}
    for run_id, c in claims.items():
        status = await store.suspend_run(
            run_id, c.token, wake_at=None, waiting_for=["approve", "reject"]
        )
        assert status == "waiting"
        run = await store.get_run(run_id)
        assert run is not None and run.waiting_for == "approve|reject"
    woken = await store.send_signal("a", "reject", None)  # the second name
    assert woken is not None and woken.status == "queued"
    assert (await store.send_signal("b", "approv", None)).status == "waiting"  # type: ignore[union-attr]
    assert (await store.send_signal("b", "approve|reject", None)).status == "queued"  # type: ignore[union-attr]


async def test_suspending_for_several_names_sees_any_already_in_the_mailbox(store: Store) -> None:
    await store.create_run(new("r"))
    [c] = await claim(store)
    await store.send_signal("r", "reject", 1)
    status = await store.suspend_run("r", c.token, wake_at=None, waiting_for=["approve", "reject"])
    assert status == "queued"


async def test_consume_first_signal_takes_the_oldest_of_the_names_once(store: Store) -> None:
    await store.create_run(new("r"))
    [c] = await claim(store)
    await store.send_signal("r", "other", 0)
    await store.send_signal("r", "reject", 1)
    await store.send_signal("r", "approve", 2)
    first = await store.consume_first_signal("r", c.token, wait(1), ["approve", "reject"])
    assert first is not None
    assert (first.name, first.payload, first.consumed_seq) == ("reject", 1, 1)
    # Repeated at the same seq (a retried write): the same signal, nothing else consumed.
    again = await store.consume_first_signal("r", c.token, wait(1), ["approve", "reject"])
    assert again is not None and again.id == first.id
    second = await store.consume_first_signal("r", c.token, wait(2), ["approve", "reject"])
    assert second is not None and (second.name, second.payload) == ("approve", 2)
    assert await store.consume_first_signal("r", c.token, wait(3), ["approve", "reject"]) is None
    steps = await store.load_steps("r")
    assert [(s.seq, s.status, s.output) for s in steps] == [
        (1, "completed", {"name": "reject", "payload": 1}),
        (2, "completed", {"name": "approve", "payload": 2}),
    ]
    mailbox = await store.list_signals("r")
    assert [(s.name, s.consumed_seq) for s in mailbox] == [
        ("other", None), ("reject", 1), ("approve", 2)
    ]


async def test_consume_first_signal_is_fenced(store: Store) -> None:
    await store.create_run(new("r"))
    [c] = await claim(store)
    await store.send_signal("r", "approve", 1)
    await store.cancel_run("r", "stop")
    assert await store.consume_first_signal("r", c.token, wait(1), ["approve"]) is None
    assert await store.consume_first_signal("r", c.token + 1, wait(1), ["approve"]) is None
    assert [s.consumed_seq for s in await store.list_signals("r")] == [None]


async def test_cancel_requests_lists_the_owners_cancelled_running_runs(
    store: Store, other: Store
) -> None:
    for run_id in ("a", "b", "c"):
        await store.create_run(new(run_id))
    await claim(store, "w1", limit=2)
    await claim(store, "w2", limit=1)
    held = {r.id: r.lease_owner for r in await store.list_runs(status="running")}
    mine = sorted(r for r, owner in held.items() if owner == "w1")
    theirs = [r for r, owner in held.items() if owner == "w2"]
    assert await store.cancel_requests("w1") == frozenset()
    await other.cancel_run(mine[0], "stop")  # from another process
    await other.cancel_run(theirs[0], "stop")
    assert await store.cancel_requests("w1") == frozenset({mine[0]})
