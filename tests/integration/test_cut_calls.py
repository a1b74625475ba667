"""Calls cut by a crash, where a user reads spend: a worker that held a run died mid-call,
leaving the call's hold in the store (sent, maybe billed, never journaled); the run is taken
over and the call sent again. The run (`RunInfo`, `tether show`, the API and the dashboard)
and the cost report (`tether cost`) show that call apart from the journaled spend, as its worst
case — before, they read as if the call had been sent once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import tether
from tests.observe_fakes import model_call
from tether.cli import observe as _observe  # noqa: F401 - registers the commands
from tether.cli import runs as _runs  # noqa: F401
from tether.cli.common import cli
from tether.observe.attribution import cost_report
from tether.server import create_app
from tether.server.auth import Auth
from tether.store.base import StepRecord

HELD = {"llm_calls": 1, "input_tokens": 1500, "output_tokens": 500, "cost_usd": 0.25}
"""The worst case the dead worker held for its call (what the agents layer reserves)."""


def make_app(url: str) -> tether.App:
    app = tether.App(url, lease_seconds=0.3)

    async def research() -> Any:
        return model_call("researcher", "gpt-4o-mini", 1200, 300)

    @app.workflow(name="research")
    async def research_flow(ctx: tether.Context) -> str:
        await ctx.run_step("research", research)
        return "done"

    return app


def cut_then_taken_over(app: tether.App, labels: dict[str, str]) -> tether.RunInfo:
    """A run whose first holder held its first call in the store, then died; another holder
    takes it over (its lease ran out) and runs it to the end."""
    run_id = app.start("research", {}, labels=labels).id

    async def die_mid_call() -> float:
        claim = await app.store.claim_run(run_id, "dead-worker", lease_seconds=0.3)
        assert claim is not None and claim.run.lease_expires is not None
        await app.store.hold_usage(run_id, claim.token, f"{run_id}:1:{claim.token}", HELD)
        return claim.run.lease_expires

    expires = app.portal.run(die_mid_call())
    time.sleep(max(0.0, expires - time.time()) + 0.01)  # the dead worker's lease runs out
    return app.run("research", run_id=run_id)


@pytest.fixture
def app(store_url: str) -> Iterator[tether.App]:
    app = make_app(store_url)
    yield app
    app.close()


def test_a_runs_call_cut_by_a_crash_shows_on_the_run(app: tether.App) -> None:
    ran = cut_then_taken_over(app, {"team": "sales"})
    for info in (ran, app.get_run(ran.id)):
        assert info.status == "succeeded" and info.recoveries == 1
        (cut,) = info.cut
        assert (cut.seq, cut.usage) == (1, HELD)
        (step,) = info.steps
        assert (step.attempts, info.cut_sends(step.seq)) == (1, 1)  # sent twice in all
        assert info.cut_usage.cost_usd == pytest.approx(0.25)
        assert info.usage.llm_calls == 1  # the journal: the re-send only

    shown = CliRunner().invoke(cli, ["show", ran.id, "--store", app.store.url])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert ("cut by crashes 1 call sent by workers that died, stopped or lost the run mid-call "
            "(seq 1)") in text
    assert "up to $0.2500 (2,000 tokens) on top of the usage above" in text
    assert " 2 (1 cut) " in text
    assert "1 more sent by workers that died, not journaled: up to $0.2500" in text

    detail = json.loads(CliRunner().invoke(
        cli, ["show", ran.id, "--json", "--store", app.store.url]).output)
    assert detail["cut_by_crashes"]["calls"] == 1
    assert detail["cut_by_crashes"]["worst_case"]["cost_usd"] == pytest.approx(0.25)
    assert detail["journal"][0]["cut_sends"] == 1

    with TestClient(create_app(app, auth=Auth(local_user="tester")),
                    base_url="http://127.0.0.1:8000") as client:
        api = client.get(f"/api/runs/{ran.id}").json()
        assert api["cut_by_crashes"]["calls"] == 1
        assert api["journal"][0]["cut_sends"] == 1
        page = client.get(f"/runs/{ran.id}").text
        assert 'id="cut-by-crashes"' in page and "2 (1 cut)" in page


def test_the_cost_report_shows_calls_cut_by_crashes_apart(app: tether.App) -> None:
    cut_then_taken_over(app, {"team": "sales"})
    clean = app.run("research", {}, labels={"team": "support"})
    rows = {r.group["team"]: r for r in asyncio.run(cost_report(app, "team,model"))}
    assert rows["sales"].calls == 1 and rows["sales"].cost_usd == pytest.approx(clean.cost_usd)
    assert (rows["sales"].cut_calls, rows["sales"].cut_usd) == (1, pytest.approx(0.25))
    assert rows["sales"].group["model"] == "gpt-4o-mini"  # the model of the step sent again
    assert (rows["support"].cut_calls, rows["support"].cut_usd) == (0, 0.0)

    report = CliRunner().invoke(cli, ["cost", "--since", "1d", "--store", app.store.url])
    assert report.exit_code == 0, report.output
    text = " ".join(report.output.split())
    assert "cut by crashes (not journaled, worst case): up to $0.250000 more in 1 call(s)" in text
    assert "sales, gpt-4o-mini: 1 call(s), up to $0.250000" in text
    data = json.loads(CliRunner().invoke(
        cli, ["cost", "--since", "1d", "--json", "--store", app.store.url]).output)
    assert data["total_usd"] == pytest.approx(2 * clean.cost_usd)  # journaled only
    assert (data["cut_calls"], data["cut_usd"]) == (1, pytest.approx(0.25))
    with TestClient(create_app(app, auth=Auth(local_user="tester")),
                    base_url="http://127.0.0.1:8000") as client:
        total = client.get("/api/cost", params={"since": "1d"}).json()["total"]
        assert (total["cut_calls"], total["cut_usd"]) == (1, pytest.approx(0.25))
        page = " ".join(client.get("/cost", params={"since": "1d"}).text.split())
        assert "Cut by crashes (not journaled, worst case): up to $0.2500 more in 1 call(s)" in page


def test_a_run_without_a_budget_marks_the_step_a_lost_worker_was_in(app: tether.App) -> None:
    # Nothing is held in the store before the call of a run without a budget or spend limit;
    # what is known is where its lost holder was at its last heartbeat. The step there is
    # marked when it is journaled after the takeover, and `tether show` says so.
    run_id = app.start("research", {}).id

    async def lost_in_step_one() -> float:
        assert await app.store.claim_run(run_id, "lost-worker", lease_seconds=0.3)
        await app.store.heartbeat("lost-worker", 0.3, {run_id: {
            "seq": 1, "name": "research", "kind": "step", "started_at": time.time()}})
        return time.time() + 0.3

    expires = app.portal.run(lost_in_step_one())
    time.sleep(max(0.0, expires - time.time()) + 0.01)  # the lost worker's lease runs out
    info = app.run("research", run_id=run_id)
    assert info.status == "succeeded" and info.recoveries == 1 and info.cut == []
    (step,) = info.steps
    assert step.attempts == 1 and step.meta.get("tether.lost_send") == 1
    shown = CliRunner().invoke(cli, ["show", run_id, "--store", app.store.url])
    text = " ".join(shown.output.split())
    assert " 1 (+1 lost) " in text, text
    assert "a lost worker was in seq 1: its call may have been sent and billed once more" in text
    with TestClient(create_app(app, auth=Auth(local_user="tester")),
                    base_url="http://127.0.0.1:8000") as client:
        assert "1 (+1 lost)" in client.get(f"/runs/{run_id}").text
    (row,) = asyncio.run(cost_report(app, "model"))
    assert (row.calls, row.lost_sends, row.cut_calls) == (1, 1, 0)
    report = " ".join(CliRunner().invoke(
        cli, ["cost", "--since", "1d", "--store", app.store.url]).output.split())
    assert "and 1 call(s) of runs without a budget or spend limit were in flight on a " \
        "worker lost mid-call" in report, report


def test_a_step_the_lost_worker_had_journaled_is_not_marked(app: tether.App) -> None:
    # Its last heartbeat named step 1, but it journaled step 1 before it was lost.
    first = app.run("research", {})
    run_id = app.start("research", {}).id

    async def lost_after_journaling() -> float:
        claim = await app.store.claim_run(run_id, "lost-worker", lease_seconds=0.3)
        assert claim is not None
        await app.store.heartbeat("lost-worker", 0.3, {run_id: {"seq": 1, "name": "research"}})
        step = first.steps[0]
        done = await app.store.write_step(run_id, claim.token, StepRecord(
            run_id=run_id, seq=1, name=step.name, kind="step", status="completed",
            output=step.output, attempts=1, started_at=time.time(), finished_at=time.time(),
            usage=step.usage.to_dict(), meta=step.meta))
        assert done
        return time.time() + 0.3

    expires = app.portal.run(lost_after_journaling())
    time.sleep(max(0.0, expires - time.time()) + 0.01)
    info = app.run("research", run_id=run_id)
    assert info.status == "succeeded" and info.recoveries == 1
    assert "tether.lost_send" not in info.steps[0].meta


def test_a_call_cut_short_by_a_workers_shutdown_is_counted_as_cut(store_url: str) -> None:
    # A worker stopping gracefully cancels what is still running after its grace period; a
    # call out at that moment may have been billed and is sent again by the next holder. It
    # released its hold as the run's holder, so the call was counted nowhere; now it is kept,
    # a lost holder's: the budget counts it and the run shows it as cut.
    app = tether.App(store_url, lease_seconds=5)
    sent, released = asyncio.Event(), asyncio.Event()
    worst = tether.Usage(llm_calls=1, output_tokens=100, cost_usd=0.1)

    async def call() -> str:
        sent.set()
        await released.wait()  # the provider answers only for the second worker
        return "answer"

    @app.workflow(name="one_call")
    async def one_call(ctx: tether.Context) -> str:
        return str(await ctx.run_step("model", call, estimate=worst))

    async def scenario() -> tether.RunInfo:
        handle = await app.start_async("one_call", {}, budget=tether.Budget(max_llm_calls=5))
        stop = asyncio.Event()
        first = asyncio.create_task(app.run_worker_async(stop=stop, grace_period=0.1))
        await asyncio.wait_for(sent.wait(), 10)
        stop.set()
        await asyncio.wait_for(first, 10)  # cancelled mid-call after 0.1 s, run released
        released.set()
        stop = asyncio.Event()
        second = asyncio.create_task(app.run_worker_async(stop=stop))
        assert await handle.result_async(timeout=20) == "answer"
        stop.set()
        await asyncio.wait_for(second, 10)
        return await app.get_run_async(handle.id)

    try:
        info = asyncio.run(scenario())
    finally:
        app.close()
    assert info.status == "succeeded"
    assert [(c.seq, c.usage["cost_usd"]) for c in info.cut] == [(1, 0.1)]
    assert info.cut_sends(1) == 1 and info.steps[0].attempts == 1
