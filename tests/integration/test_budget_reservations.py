"""Budgets attacked concurrently and at their edge, against the local fake provider: a dollar cap
ends a run at or under it, a Parallel under a call budget sends exactly what the budget allows,
a run parked on its budget resumes after `tether budget`, and a response larger than its
reservation is reported as overshoot."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

import tether
from tests.e2e.budget_app import CALL_USD, answer_at_bound, make_app, tool_then_answer
from tests.e2e.harness import tether_cli
from tests.fake_provider import FakeProvider
from tether.engine.budget import ZERO, Usage

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider(answer_at_bound, latency=0.2) as server:
        yield server


def test_a_dollar_cap_ends_the_run_at_or_under_it(store_url: str, provider: FakeProvider) -> None:
    provider.responder = tool_then_answer(calls=10)
    app = make_app(store_url, provider_url=provider.url)
    try:
        # $0.35 holds three $0.10 calls; the fourth's worst case would pass the cap.
        info = app.run("looper", {}, budget=tether.Budget(max_cost_usd=0.35))
        assert info.status == "failed"
        assert info.error is not None and info.error["type"] == "BudgetExceeded"
        assert "max_cost_usd=0.35" in info.error["message"]
        assert info.cost_usd == pytest.approx(3 * CALL_USD)
        assert info.cost_usd <= 0.35
        assert len(provider.requests) == 3
    finally:
        app.close()


def test_a_parallel_under_a_call_budget_sends_exactly_the_budget(
    store_url: str, provider: FakeProvider
) -> None:
    app = make_app(store_url, provider_url=provider.url)
    try:
        # Four branches start at once; their calls are in flight together (0.2 s each).
        info = app.run("fanout", {}, budget=tether.Budget(max_llm_calls=3))
        assert info.status == "failed"
        assert info.error is not None and info.error["type"] == "BudgetExceeded"
        assert "max_llm_calls=3" in info.error["message"]
        assert len(provider.requests) == 3
        # The three calls that were sent are in the ledger (the run waited for them).
        assert info.usage.llm_calls == 3
    finally:
        app.close()


def test_concurrent_steps_under_one_node_budget_run_exactly_what_it_allows(
    store_url: str,
) -> None:
    # What an agent node's calls pass to the engine: an estimate and the node's own budget.
    app = tether.App(store_url)
    node = tether.Budget(max_llm_calls=2)
    started: list[int] = []

    async def call(i: int) -> int:
        started.append(i)
        await asyncio.sleep(0.2)  # still in flight when the other branches check the budget
        return i

    @app.workflow
    async def fan(ctx: tether.Context) -> list[int]:
        def branch(i: int) -> Any:
            return lambda: ctx.run_step("call", call, (i,), estimate=Usage(llm_calls=1),
                                        budgets=((node, ZERO, "agent a"),))

        return await ctx.branches([branch(i) for i in range(4)])

    try:
        info = app.run("fan", {})
        assert info.status == "failed"
        assert info.error is not None and info.error["type"] == "BudgetExceeded"
        assert "agent a" in info.error["message"]
        assert len(started) == 2, "the node budget let more calls start than it allows"
    finally:
        app.close()


def test_once_the_budget_ends_the_run_no_branch_starts_a_new_step(store_url: str) -> None:
    app = tether.App(store_url)
    started: list[str] = []

    async def call(name: str) -> str:
        started.append(name)
        await asyncio.sleep(0.2)  # still in flight when the other branch is refused
        return name

    async def after() -> str:
        started.append("after")  # a side effect of a run that is already failing
        return "after"

    @app.workflow
    async def two(ctx: tether.Context) -> list[str]:
        async def first() -> str:
            await ctx.run_step("call", call, ("a",), estimate=Usage(llm_calls=1))
            return await ctx.run_step("after", after)

        async def second() -> str:
            return await ctx.run_step("call", call, ("b",), estimate=Usage(llm_calls=1))

        return await ctx.branches([first, second])

    try:
        info = app.run("two", {}, budget=tether.Budget(max_llm_calls=1))
        assert info.status == "failed"
        assert info.error is not None and info.error["type"] == "BudgetExceeded"
        # The call in flight finishes (it was sent); nothing new starts after the refusal.
        assert started == ["a"]
        assert [s.name for s in info.steps] == ["call"]
    finally:
        app.close()


def test_a_run_parked_on_its_dollar_cap_resumes_after_tether_budget(
    sqlite_url: str, provider: FakeProvider
) -> None:
    provider.responder = tool_then_answer(calls=5)
    app = make_app(sqlite_url, provider_url=provider.url)
    try:
        parked = app.run("looper", {}, budget=tether.Budget(max_cost_usd=0.35,
                                                            on_exceed="suspend"))
        assert (parked.status, parked.waiting_for) == ("waiting", "tether.budget")
        assert parked.cost_usd == pytest.approx(0.30)
        assert len(provider.requests) == 3
        done = tether_cli("budget", parked.id, "--max-cost-usd", "0.55", store=sqlite_url)
        assert done.returncode == 0, done.stderr
        assert "now queued" in done.stdout
        assert app.get_run(parked.id).budget == {"max_cost_usd": 0.55, "on_exceed": "suspend"}
        info = app.run("looper", {}, run_id=parked.id)
        assert info.status == "succeeded", info.error
        assert info.cost_usd == pytest.approx(5 * CALL_USD)
        assert len(provider.requests) == 5
        # Bad input changes nothing: one line, exit code 2.
        bad = tether_cli("budget", parked.id, "--max-cost-usd", "-1", store=sqlite_url)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1
        unknown = tether_cli("budget", "no-such-run", "--max-llm-calls", "3", store=sqlite_url)
        assert unknown.returncode == 2 and "no run with id" in unknown.stderr
    finally:
        app.close()


def test_a_response_larger_than_its_reservation_is_reported(
    sqlite_url: str, provider: FakeProvider
) -> None:
    # The provider ignores the bound and answers with 250 completion tokens (reserved: 100).
    provider.responder = lambda request: {"content": "long", "usage": {"completion_tokens": 250}}
    app = make_app(sqlite_url, provider_url=provider.url)
    try:
        info = app.run("caller", {}, budget=tether.Budget(max_cost_usd=1.0))
        assert info.status == "succeeded"
        assert info.cost_usd == pytest.approx(0.25)
        assert info.overshoot["cost_usd"] == pytest.approx(0.15)
        shown = tether_cli("show", info.id, store=sqlite_url)
        assert "over its reservations by $0.1500" in shown.stdout, shown.stdout
        report = tether_cli("cost", "--json", store=sqlite_url)
        assert json.loads(report.stdout)["overshoot_usd"] == pytest.approx(0.15)
    finally:
        app.close()


def test_an_unpriced_model_under_a_dollar_cap_is_refused_before_it_is_sent(
    sqlite_url: str, provider: FakeProvider
) -> None:
    app = tether.App(sqlite_url)
    from tests.e2e.budget_app import model

    try:
        unknown = model(provider.url)
        unknown._model_name = "no-such-model-xyz"  # pyright: ignore[reportPrivateUsage]
        app.register(tether.Agent("mystery", unknown, "Answer."))
        info = app.run("mystery", {}, budget=tether.Budget(max_cost_usd=1.0))
        assert info.status == "failed"
        assert info.error is not None and info.error["type"] == "BudgetExceeded"
        assert "has no known price" in info.error["message"]
        assert "max_cost_usd=1" in info.error["message"]
        assert provider.requests == []
        # Without a dollar cap the same model runs (its calls are marked unpriced).
        assert app.run("mystery", {}).status == "succeeded"
    finally:
        app.close()


def test_a_run_parked_on_its_budget_resumes_after_the_http_api_raises_it(
    sqlite_url: str, provider: FakeProvider
) -> None:
    from fastapi.testclient import TestClient

    from tether.server import create_app
    from tether.server.auth import Auth

    provider.responder = tool_then_answer(calls=3)
    app = make_app(sqlite_url, provider_url=provider.url)
    try:
        parked = app.run("looper", {}, budget=tether.Budget(max_llm_calls=2, on_exceed="suspend"))
        assert (parked.status, parked.waiting_for) == ("waiting", "tether.budget")
        api = create_app(app, auth=Auth(local_user="tester"))
        with TestClient(api, base_url="http://127.0.0.1:8000") as http:
            bad = http.post(f"/api/runs/{parked.id}/budget", json={"max_llm_calls": -1})
            assert bad.status_code == 422
            assert app.get_run(parked.id).budget == {"max_llm_calls": 2, "on_exceed": "suspend"}
            raised = http.post(f"/api/runs/{parked.id}/budget", json={"max_llm_calls": 3})
            assert raised.status_code == 200, raised.text
            assert raised.json()["status"] == "queued"
            info = app.run("looper", {}, run_id=parked.id)
            assert info.status == "succeeded" and info.usage.llm_calls == 3
            ended = http.post(f"/api/runs/{parked.id}/budget", json={"max_llm_calls": 9})
            assert ended.status_code == 409
    finally:
        app.close()


def test_only_label_spend_limits_pay_a_store_round_trip(
    sqlite_url: str, provider: FakeProvider
) -> None:
    from tether.store.sqlite import SQLiteStore

    class CountingStore(SQLiteStore):
        reserves = 0

        async def reserve_spend(self, *args: object, **kwargs: object) -> object:
            CountingStore.reserves += 1
            return await super().reserve_spend(*args, **kwargs)  # type: ignore[arg-type]

    counted = make_app(CountingStore(sqlite_url), provider_url=provider.url)
    try:
        # No labels under a limit: neither a plain run nor one with a budget reserves in the
        # store (a run's budget is held in its holder's memory).
        assert counted.run("caller", {}).status == "succeeded"
        assert counted.run("caller", {}, budget=tether.Budget(max_cost_usd=1.0,
                                                              max_llm_calls=3)).status == "succeeded"
        assert CountingStore.reserves == 0
        assert counted.run("caller", {}, labels={"tenant": "acme"}).status == "succeeded"
        assert CountingStore.reserves == 1
    finally:
        counted.close()
