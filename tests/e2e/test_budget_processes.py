"""Budgets and spend limits across real worker processes (tests/e2e/budget_app.py against the
local fake provider): a burst of runs on several workers under one label spend limit, a dead
worker's reservation staying counted, a paused one unable to release its reservation once woken,
and a run's budget surviving a SIGKILL."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
from tests.e2e.budget_app import CALL_USD, answer_at_bound, tool_then_answer
from tests.e2e.harness import client, tether_cli, wait_until, worker_pool
from tests.fake_provider import FakeProvider

APP = "tests.e2e.budget_app:app"
ACME = {"tenant": "acme"}
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
    with FakeProvider(answer_at_bound, latency=0.3) as server:
        monkeypatch.setenv("BUDGET_PROVIDER_URL", server.url)
        yield server


def finished(app: tether.App, ids: list[str]) -> list[tether.RunInfo] | None:
    infos = [app.get_run(run_id) for run_id in ids]
    return infos if all(info.finished for info in infos) else None


def test_a_burst_on_three_workers_stays_within_the_label_spend_limit(
    store_url: str, tmp_path: Path, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUDGET_LIMIT_USD", "1.0")
    # The default lease: a worker whose loop stalls for a second while it starts a hundred
    # runs on a loaded machine must not lose them to a takeover. A zombie's calls in flight
    # are sent anyway (its reservations stop counting at the takeover): that is the lease's
    # business, not what this test is about.
    monkeypatch.setenv("BUDGET_LEASE_SECONDS", "10")
    app = client(store_url)
    try:
        # 24 runs queued at once, then three workers race for them; every call reserves $0.10
        # of the $1.00 tenant limit and the provider answers each within its reservation.
        ids = [app.start("caller", {}, labels=ACME).id for _ in range(24)]
        with worker_pool(tmp_path, store_url) as workers:
            for _ in range(3):
                workers.start(app=APP)
            infos = wait_until(lambda: finished(app, ids), timeout=120, what="all 24 runs to end")
        spent = sum(info.cost_usd for info in infos)
        succeeded = [info for info in infos if info.status == "succeeded"]
        refused = [info for info in infos if info.status == "failed"]
        assert spent <= 1.0 + 1e-9
        assert len(succeeded) == 10 and spent == pytest.approx(10 * CALL_USD)
        assert len(provider.requests) == 10
        assert len(refused) == 14
        for info in refused:
            assert info.error is not None and info.error["type"] == "BudgetExceeded"
            assert "tenant=acme at most $1 per hour" in info.error["message"]
    finally:
        app.close()


def test_a_dead_workers_call_in_flight_stays_counted_against_the_limit(
    store_url: str, tmp_path: Path, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker killed mid-call may have had the call billed; the run taken over sends it again.
    # Its reservation used to expire with the lease, so each kill freed a call's worth of room
    # (measured from outside: 1.87x a limit after one kill, 3.7x after three). It now counts as
    # spent in the window: $0.25 holds the cut call and its re-send, not a third call.
    monkeypatch.setenv("BUDGET_LIMIT_USD", "0.25")
    provider.fail_next("hang", seconds=60)
    app = client(store_url)
    try:
        with worker_pool(tmp_path, store_url) as workers:
            workers.start("a", app=APP)
            first = app.start("caller", {}, labels=ACME).id
            wait_until(lambda: len(provider.requests) == 1, timeout=30,
                       what="the first call to be in flight (reserved) on worker a")
            workers.kill("a")  # mid-call: its $0.10 reservation is never released
            workers.start("b", app=APP)
            (taken,) = wait_until(lambda: finished(app, [first]), timeout=60,
                                  what="the first run to end on worker b")
            assert taken.status == "succeeded", taken.error  # $0.10 cut + $0.10 sent again
            second = app.start("caller", {}, labels=ACME).id
            (refused,) = wait_until(lambda: finished(app, [second]), timeout=60,
                                    what="the second run to end")
        assert refused.status == "failed"
        assert refused.error is not None and refused.error["type"] == "BudgetExceeded"
        assert len(provider.requests) == 2  # the cut call and its re-send; no third call
    finally:
        app.close()


def test_a_paused_worker_woken_after_a_takeover_cannot_release_its_reservation(
    store_url: str, tmp_path: Path, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The zombie release: worker a is SIGSTOPped (not killed) mid-call holding $0.10 of the
    # $0.25 tenant limit; b takes the run over after the lease and sends the call again. Woken,
    # a's call ends, its journal write is fenced off and it drops the run -- releasing its
    # reservation on the way out. Its call may have been billed, so that release must not
    # count: were it honoured, $0.10 journaled would leave room for a third $0.10 call.
    monkeypatch.setenv("BUDGET_LIMIT_USD", "0.25")
    provider.fail_next("hang", seconds=6)  # a's call: the connection closes, unanswered
    app = client(store_url)
    try:
        with worker_pool(tmp_path, store_url) as workers:
            zombie = workers.start("a", app=APP)
            first = app.start("caller", {}, labels=ACME).id
            wait_until(lambda: len(provider.requests) == 1, timeout=30,
                       what="the first call to be in flight (reserved) on worker a")
            zombie.send_signal(signal.SIGSTOP)
            try:
                workers.start("b", app=APP)
                (taken,) = wait_until(lambda: finished(app, [first]), timeout=60,
                                      what="the first run to end on worker b")
            finally:
                zombie.send_signal(signal.SIGCONT)
            assert taken.status == "succeeded", taken.error  # $0.10 cut + $0.10 sent again
            wait_until(lambda: f"run {first}: lease lost" in workers.log("a"), timeout=30,
                       what="worker a, woken, dropping the run it lost")
            assert zombie.poll() is None, workers.log("a")  # a lives on, a worker again
            second = app.start("caller", {}, labels=ACME).id
            (refused,) = wait_until(lambda: finished(app, [second]), timeout=60,
                                    what="the second run to end")
        assert refused.status == "failed", "a's reservation was released by a zombie"
        assert refused.error is not None and refused.error["type"] == "BudgetExceeded"
        assert len(provider.requests) == 2  # a's call and b's re-send; no third call
    finally:
        app.close()


def test_a_runs_budget_holds_across_a_sigkill(
    store_url: str, tmp_path: Path, provider: FakeProvider
) -> None:
    provider.responder = tool_then_answer(calls=20)
    app = client(store_url)
    try:
        with worker_pool(tmp_path, store_url) as workers:
            workers.start("a", app=APP)
            run = app.start("looper", {}, budget=tether.Budget(max_llm_calls=5)).id
            wait_until(lambda: app.get_run(run).usage.llm_calls >= 2, timeout=30,
                       what="two model calls journaled on worker a")
            workers.kill("a")
            workers.start("b", app=APP)
            info = wait_until(lambda: (i := app.get_run(run)).finished and i, timeout=60,
                              what="the run to end on worker b")
        assert info.status == "failed"
        assert info.error is not None and info.error["type"] == "BudgetExceeded"
        # The budget counts what worker a journaled, and a call the kill cut (held in the
        # store before it was sent): five calls sent in all, not five more, nor six.
        assert info.usage.llm_calls in (4, 5)
        assert len(provider.requests) <= 5
    finally:
        app.close()


def test_a_call_cut_by_a_sigkill_counts_against_the_runs_budget(
    store_url: str, tmp_path: Path, provider: FakeProvider
) -> None:
    # The cut call was sent (a provider bills it) but never journaled; the worker taking the
    # run over sends it again. Counting only the journal, a run under max_llm_calls=5 made six
    # requests (measured from outside: 15-16 under max_llm_calls=12 with six kills).
    provider.responder = tool_then_answer(calls=20)
    provider.fail_next("hang", seconds=60)
    app = client(store_url)
    try:
        with worker_pool(tmp_path, store_url) as workers:
            workers.start("a", app=APP)
            run = app.start("looper", {}, budget=tether.Budget(max_llm_calls=5)).id
            wait_until(lambda: len(provider.requests) == 1, timeout=30,
                       what="the first call to be in flight on worker a")
            workers.kill("a")
            workers.start("b", app=APP)
            info = wait_until(lambda: (i := app.get_run(run)).finished and i, timeout=60,
                              what="the run to end on worker b")
        assert info.status == "failed"
        assert info.error is not None and info.error["type"] == "BudgetExceeded"
        assert len(provider.requests) == 5  # the cut call, its re-send and three more
        assert info.usage.llm_calls == 4  # journaled; the cut one is the fifth
        # What a user reads: the journal said the first call was tried once and the spend
        # report counted four calls -- below the provider's bill for five.
        (cut,) = info.cut
        first_call = next(s for s in info.steps if s.seq == cut.seq)
        assert (first_call.attempts, info.cut_sends(cut.seq)) == (1, 1)  # two sends, one cut
        assert info.cut_usage.cost_usd == pytest.approx(CALL_USD)
        shown = " ".join(tether_cli("show", run, store=store_url).stdout.split())
        assert "cut by crashes 1 call sent by workers that died" in shown, shown
        assert "never journaled: up to $0.1000 (" in shown, shown
        assert " 2 (1 cut) " in shown, shown
        report = json.loads(tether_cli("cost", "--by", "model", "--json", store=store_url).stdout)
        assert report["total_usd"] == pytest.approx(4 * CALL_USD)  # journaled
        assert (report["cut_calls"], report["cut_usd"]) == (1, pytest.approx(CALL_USD))
        (row,) = report["rows"]
        assert (row["model"], row["calls"], row["cut_calls"]) == ("gpt-4.1-mini", 4, 1)
        table = " ".join(tether_cli("cost", "--by", "model", store=store_url).stdout.split())
        assert "cut by crashes (not journaled, worst case): up to $0.100000 more in 1 call(s)" \
            in table, table
    finally:
        app.close()
