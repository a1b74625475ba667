"""Retention by workers: finished runs are deleted by their most specific rule (workflow, then
status, then default), nothing unfinished is touched, and a worker applies the policy alone."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

import tether

DAY = 86400.0


def make_app(url: str, retention: tether.Retention | None = None) -> tether.App:
    app = tether.App(url, retention=retention)

    @app.workflow
    async def report(ctx: tether.Context, fail: bool = False) -> str:
        if fail:
            raise RuntimeError("broken")
        return "ok"

    @app.workflow
    async def audit(ctx: tether.Context) -> str:
        return "kept long"

    @app.workflow
    async def waits(ctx: tether.Context) -> str:
        return await ctx.wait_for_signal("go")

    return app


async def _age(app: tether.App, run_id: str, days: float) -> None:
    """Pretend the run finished `days` ago (the store's own clock is not ours to move)."""
    from tether.store.base import StepRecord  # noqa: F401 - store-level access below

    finished = time.time() - days * DAY
    store = app.store
    if store.url.startswith("sqlite"):
        await store.write(
            lambda conn: conn.execute(
                "UPDATE runs SET finished_at = ?, created_at = ? WHERE id = ?",
                (finished, finished, run_id),
            )
        )
    else:
        async def update(conn: object) -> None:
            await conn.execute(  # type: ignore[attr-defined]
                "UPDATE runs SET finished_at = %s, created_at = %s WHERE id = %s",
                (finished, finished, run_id),
            )

        await store.write(update)


def test_each_run_is_kept_for_its_most_specific_period(store_url: str) -> None:
    policy = tether.Retention(
        default=timedelta(days=30),
        statuses={"succeeded": timedelta(days=7)},
        workflows={"audit": timedelta(days=365)},
    )
    app = make_app(store_url, policy)
    ok_old = app.run("report", {}).id  # succeeded 10 days ago: past its 7 days
    ok_new = app.run("report", {}).id  # succeeded 3 days ago: kept
    failed_mid = app.run("report", {"fail": True}).id  # failed 10 days ago: 30 days apply
    failed_old = app.run("report", {"fail": True}).id  # failed 40 days ago: past 30
    audit_old = app.run("audit", {}).id  # 100 days: its workflow keeps it a year
    waiting = app.run("waits", {}).id  # unfinished: never touched
    for run_id, days in ((ok_old, 10), (ok_new, 3), (failed_mid, 10), (failed_old, 40),
                         (audit_old, 100)):
        app.portal.run(_age(app, run_id, days))

    deleted = app.portal.run(policy.apply(app.store))

    assert deleted == 2
    left = {r.id for r in app.list_runs(limit=100)}
    assert left == {ok_new, failed_mid, audit_old, waiting}


def test_a_worker_applies_the_policy_on_its_own(store_url: str) -> None:
    policy = tether.Retention(default=timedelta(days=1), every=timedelta(seconds=0.2))
    app = make_app(store_url, policy)
    old = app.run("report", {}).id
    fresh = app.run("report", {}).id
    app.portal.run(_age(app, old, 2))

    async def work() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(app.run_worker_async(concurrency=2, stop=stop))
        deadline = time.monotonic() + 30
        try:
            while any(r.id == old for r in await app.list_runs_async(limit=100)):
                assert time.monotonic() < deadline, "the worker never applied the retention"
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)

    app.portal.run(work())
    assert {r.id for r in app.list_runs(limit=100)} == {fresh}


def test_a_policy_naming_a_status_that_never_ends_a_run_is_refused() -> None:
    with pytest.raises(tether.UserError, match="not a final status"):
        tether.Retention(statuses={"waiting": timedelta(days=1)})
