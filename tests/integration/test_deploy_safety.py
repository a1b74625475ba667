"""Deploy safety against real stores: the worker registry, runs no live worker serves, and
`fork(..., version=)` moving a run onto new code."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import tether
from tether.engine.presence import coverage
from tether.observe.health import assess_runs
from tether.store.base import WorkerRecord

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def worker(app: tether.App) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(app.run_worker_async(concurrency=10, stop=stop, grace_period=2))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def until(predicate: Any, timeout: float = 10.0, what: str = "a condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def releases(store_url: str) -> tuple[tether.App, tether.App, dict[str, int]]:
    """Version 1 and version 2 of workflow `order` (same step names up to the approval; v2
    ships differently), counting executions per idempotency key."""
    executed: dict[str, int] = {}

    def count() -> None:
        key = tether.current_step().idempotency_key
        executed[key] = executed.get(key, 0) + 1

    v1 = tether.App(store_url, lease_seconds=1.0)
    v2 = tether.App(store_url, lease_seconds=1.0)

    @v1.step(name="quote")
    async def quote_v1(item: str) -> dict[str, Any]:
        count()
        return {"item": item, "price": 10}

    @v1.step(name="ship")
    async def ship_v1(item: str) -> str:
        count()
        return f"{item} shipped by v1"

    @v1.workflow(name="order", version="1")
    async def order_v1(ctx: tether.Context, item: str) -> dict[str, Any]:
        quote = await quote_v1(item)
        decision = await ctx.wait_for_signal("approval")
        return {"quote": quote, "decision": decision, "shipped": await ship_v1(item)}

    @v2.step(name="quote")
    async def quote_v2(item: str) -> dict[str, Any]:
        count()
        return {"item": item, "price": 20}

    @v2.step(name="ship")
    async def ship_v2(item: str) -> str:
        count()
        return f"{item} shipped by v2"

    @v2.workflow(name="order", version="2")
    async def order_v2(ctx: tether.Context, item: str) -> dict[str, Any]:
        quote = await quote_v2(item)
        decision = await ctx.wait_for_signal("approval")
        return {"quote": quote, "decision": decision, "shipped": await ship_v2(item)}

    return v1, v2, executed


def record(owner: str, lease: float, *pairs: tuple[str, str]) -> WorkerRecord:
    return WorkerRecord(owner, owner, "host", 1, time.time(), time.time(), lease, pairs)


async def test_the_registry_lists_live_workers_and_forgets_silent_ones(store_url: str) -> None:
    app = tether.App(store_url)
    store = app.store
    await store.register_worker(record("steady", 30.0, ("order", "1"), ("order", "2")))
    await store.register_worker(record("fleeting", 1.0, ("report", "1")))
    listed = {w.owner: w for w in await store.list_workers()}
    assert listed["steady"].workflows == (("order", "1"), ("order", "2"))
    assert "fleeting" in listed
    # Silent for three of its lease periods: no longer live.
    await until(lambda: _lacks(store, "fleeting"), timeout=30, what="a silent worker to drop")
    assert not await store.touch_worker("gone")  # no row: the worker must register again
    assert await store.touch_worker("steady")
    await store.remove_worker("steady")
    assert await store.list_workers() == []


async def _owners(store: Any) -> set[str]:
    return {w.owner for w in await store.list_workers()}


async def _lacks(store: Any, owner: str) -> bool:
    return owner not in await _owners(store)


async def test_a_worker_is_in_the_registry_while_it_runs(store_url: str) -> None:
    v1, _, _ = releases(store_url)
    async with worker(v1):
        await until(lambda: _has_pair(v1, ("order", "1")), what="the worker to register")
    # A graceful stop removes the row at once, not after it ages out.
    assert await v1.store.list_workers() == []


async def _has_pair(app: tether.App, pair: tuple[str, str]) -> bool:
    return any(pair in w.workflows for w in await app.store.list_workers())


async def test_runs_no_live_worker_serves_are_stuck_with_what_to_do(store_url: str) -> None:
    v1, _, _ = releases(store_url)
    run = await v1.start_async("order", {"item": "lamp"})
    await v1.store.register_worker(record("v1-worker", 30.0, ("order", "1")))
    [served] = await assess_runs(v1, [await v1.get_run_async(run.id)])
    assert served.verdict == "ok"

    await v1.store.remove_worker("v1-worker")
    await v1.store.register_worker(record("v2-worker", 30.0, ("order", "2")))
    [stranded] = await assess_runs(v1, [await v1.get_run_async(run.id)])
    assert stranded.verdict == "stuck"
    assert stranded.reason == (
        "no live worker serves order v1; live workers serve v2 — fork it with "
        f"`tether fork {run.id} --version 2` or start a v1 worker"
    )
    live = await coverage(v1.store)
    assert live.gap("order", None) is None  # a run started by name: any version serves it
    assert "no live worker serves workflow 'invoice'" in (live.gap("invoice", "1") or "")


async def test_fork_onto_version_2_runs_the_rest_on_new_code(store_url: str) -> None:
    v1, v2, executed = releases(store_url)
    async with worker(v1):
        source = await v1.start_async("order", {"item": "lamp"})
        await until(lambda: _status(v1, source.id, "waiting"), what="the run to wait")
    # The deploy: version 1 is gone; the approval arrives for a run nobody will claim.
    await v1.signal_async(source.id, "approval", {"ok": True})
    assert (await v1.get_run_async(source.id)).status == "queued"

    moved = await v2.fork_async(source.id, version="2")
    async with worker(v2):
        output = await moved.result_async(timeout=20)
    # The quote (step 1) and the approval came from v1's journal and mailbox; only the
    # shipping ran, on v2's code.
    assert output == {
        "quote": {"item": "lamp", "price": 10},
        "decision": {"ok": True},
        "shipped": "lamp shipped by v2",
    }
    assert executed == {f"{source.id}:1": 1, f"{moved.id}:3": 1}
    info = await v2.get_run_async(moved.id)
    assert (info.version, info.parent_id) == ("2", source.id)
    old = await v2.get_run_async(source.id)
    assert old.status == "cancelled"
    assert f"moved to version 2 as run {moved.id}" in str(old.error)


async def _status(app: tether.App, run_id: str, status: str) -> bool:
    return (await app.get_run_async(run_id)).status == status


async def test_bad_forks_are_refused_and_create_nothing(store_url: str) -> None:
    v1, v2, _ = releases(store_url)
    async with worker(v1):
        source = await v1.start_async("order", {"item": "lamp"})
        await until(lambda: _status(v1, source.id, "waiting"), what="the run to wait")
    with pytest.raises(tether.UserError, match=r"has 2 journal entries, so from_step must be "
                       r"between 1 and 3 .* got 999; nothing was forked"):
        await v1.fork_async(source.id, 999)
    with pytest.raises(tether.UserError, match="from_step must be between 1 and 3"):
        await v1.fork_async(source.id, 0)
    with pytest.raises(tether.UserError, match=r"workflow 'order' has no version '7' in this "
                       r"app \(it has 2\)"):
        await v2.fork_async(source.id, version="7")
    assert [r.id for r in await v1.list_runs_async()] == [source.id]
    assert (await v1.get_run_async(source.id)).status == "waiting"


async def test_a_missing_sqlite_directory_is_a_store_error_naming_it(tmp_path: Any) -> None:
    app = tether.App(f"sqlite:///{tmp_path}/nope/x.db")
    with pytest.raises(tether.StoreNotFound, match=f"the directory {tmp_path}/nope does not "
                       "exist; create it"):
        await app.list_runs_async()
    assert not (tmp_path / "nope").exists()


async def test_the_api_forks_onto_a_version_and_flags_unserved_runs(store_url: str) -> None:
    from fastapi.testclient import TestClient

    from tether.server import create_app
    from tether.server.auth import Auth

    v1, v2, _ = releases(store_url)
    async with worker(v1):
        source = await v1.start_async("order", {"item": "lamp"})
        await until(lambda: _status(v1, source.id, "waiting"), what="the run to wait")
    await v1.store.register_worker(record("v2-worker", 30.0, ("order", "2")))
    http = TestClient(create_app(v2, auth=Auth(local_user="tester")))
    shown = await asyncio.to_thread(http.get, f"/api/runs/{source.id}")
    assert shown.json()["health"]["verdict"] == "stuck"
    assert "no live worker serves order v1; live workers serve v2" in shown.json()["health"]["reason"]
    forked = await asyncio.to_thread(
        http.post, f"/api/runs/{source.id}/fork", json={"version": "2"}
    )
    assert forked.status_code == 201, forked.text
    moved = forked.json()
    assert (moved["version"], moved["parent_id"]) == ("2", source.id)
    assert [s["name"] for s in moved["journal"]] == ["quote"]
    assert (await v2.get_run_async(source.id)).status == "cancelled"


def test_the_api_answers_503_naming_a_store_it_cannot_open(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    from tether.server import create_app
    from tether.server.auth import Auth

    local = Auth(local_user="tester")
    http = TestClient(create_app(tether.App(f"sqlite:///{tmp_path}/nope/x.db"), auth=local))
    response = http.get("/api/runs")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "StoreNotFound"
    assert f"the directory {tmp_path}/nope does not exist" in error["message"]
