"""Cost: priced when recorded with genai-prices, unpriced models reported, overrides; cost
attribution by label and model over leaf model calls; spend limits across runs."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import genai_prices
import pytest
from typer.testing import CliRunner

import tether
from tests.observe_fakes import model_call, tool_call
from tether.cli.common import cli
from tether.engine.budget import Usage
from tether.observe import names as n
from tether.observe.attribution import cost_report, format_node_summary, node_summary
from tether.observe.cost import (
    PRICE_DATA_VERSION,
    PriceOverride,
    price_model_call,
    price_overrides,
    reprice,
    set_price_overrides,
)
from tether.observe.limits import SpendLimit, check_spend, set_spend_limits, spend_limits
from tether.store.base import Claim, NewRun


def genai_price(model: str, provider: str, input_tokens: int, output_tokens: int) -> float:
    calc = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=input_tokens, output_tokens=output_tokens),
        model_ref=model,
        provider_id=provider,
    )
    return float(Decimal(str(calc.total_price)))


def make_app(url: str) -> tether.App:
    app = tether.App(url)

    async def research() -> Any:
        return model_call("researcher", "gpt-4o-mini", 1200, 300)

    async def search() -> Any:
        return tool_call("researcher", "search_company")

    async def plan() -> Any:
        return model_call("planner", "gpt-4.1", 800, 150)

    async def draft() -> Any:
        return model_call("drafter", "claude-3-5-haiku-latest", 500, 400, provider="anthropic")

    async def mystery() -> Any:
        return model_call("drafter", "acme-llm-9", 100, 100, provider="acme")

    @app.workflow(name="titanium")
    async def titanium(ctx: tether.Context, models: int = 3, unknown: bool = False) -> str:
        await ctx.run_step("research", research)
        await ctx.run_step("search", search)
        if models >= 2:
            await ctx.run_step("plan", plan)
        if models >= 3:
            await ctx.run_step("draft", draft)
        if unknown:
            await ctx.run_step("mystery", mystery)
        return "done"

    return app


def expected_three_models() -> dict[str, float]:
    return {
        "gpt-4o-mini": genai_price("gpt-4o-mini", "openai", 1200, 300),
        "gpt-4.1": genai_price("gpt-4.1", "openai", 800, 150),
        "claude-3-5-haiku-latest": genai_price("claude-3-5-haiku-latest", "anthropic", 500, 400),
    }


def test_a_multi_model_run_attributes_each_call_to_its_model(store_url: str) -> None:
    app = make_app(store_url)
    sales = app.run("titanium", {"models": 3}, labels={"team": "sales", "tenant": "acme"})
    app.run("titanium", {"models": 1}, labels={"team": "support"})
    expected = expected_three_models()
    assert sales.cost_usd == pytest.approx(sum(expected.values()))
    rows = asyncio.run(cost_report(app, "team,model"))
    got = {(r.group["team"], r.group["model"]): r for r in rows}
    assert set(got) == {
        ("sales", "gpt-4o-mini"), ("sales", "gpt-4.1"), ("sales", "claude-3-5-haiku-latest"),
        ("support", "gpt-4o-mini"),
    }
    for model, cost in expected.items():
        row = got[("sales", model)]
        assert row.cost_usd == pytest.approx(cost)
        assert row.calls == 1
        assert row.price_sources == [PRICE_DATA_VERSION]
    # Leaf model calls only: the tool call and the run/node totals add nothing.
    total = sum(r.cost_usd for r in rows)
    assert total == pytest.approx(sum(expected.values()) + expected["gpt-4o-mini"])


def test_cost_cli_json(sqlite_url: str) -> None:
    app = make_app(sqlite_url)
    app.run("titanium", {"models": 3}, labels={"team": "sales"})
    app.close()
    from tether.cli import observe as _observe  # noqa: F401  (registers the commands)

    result = CliRunner().invoke(
        cli, ["cost", "--by", "team,model", "--since", "1d", "--json", "--store", sqlite_url]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    by_model = {r["model"]: r for r in data["rows"]}
    for model, cost in expected_three_models().items():
        assert by_model[model]["team"] == "sales"
        assert by_model[model]["cost_usd"] == pytest.approx(cost)
    assert data["total_usd"] == pytest.approx(sum(expected_three_models().values()))
    assert data["unpriced_calls"] == 0


def test_unknown_model_is_unpriced_never_zero(sqlite_url: str) -> None:
    app = make_app(sqlite_url)
    info = app.run("titanium", {"models": 1, "unknown": True}, labels={"team": "x"})
    mystery = next(s for s in info.steps if s.name == "mystery")
    assert mystery.meta[n.PRICE_SOURCE] == "unpriced"
    assert n.COST_USD not in mystery.meta
    assert info.usage.unpriced_calls == 1
    rows = asyncio.run(cost_report(app, "model"))
    unknown = next(r for r in rows if r.group["model"] == "acme-llm-9")
    assert unknown.unpriced_calls == 1
    assert unknown.calls == 1
    text = format_node_summary(node_summary(info))
    assert "1 model call(s) unpriced" in text


def test_labels_are_inherited_by_child_runs(sqlite_url: str) -> None:
    app = make_app(sqlite_url)
    parent = app.run("titanium", {"models": 1}, labels={"team": "sales", "feature": "outreach"})

    async def child() -> None:
        new = NewRun(id="child-1", workflow="titanium", version="1", input={"models": 1},
                     labels={"feature": "followup"}, parent_id=parent.id)
        run, token, _ = await app.store.create_run(new, owner="test", lease_seconds=10)
        assert token is not None
        await app.executor.execute(Claim(run=run, token=token, recovered=False))

    asyncio.run(child())
    rows = asyncio.run(cost_report(app, "team,feature"))
    got = {(r.group["team"], r.group["feature"]): r.calls for r in rows}
    assert got == {("sales", "outreach"): 1, ("sales", "followup"): 1}


def test_price_overrides_from_app_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    app = tether.App("sqlite:///:memory:")
    monkeypatch.setenv("TETHER_PRICE_OVERRIDES", json.dumps(
        {"acme-llm-9": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
         "gpt-4o-mini": {"input_per_mtok": 9.0, "output_per_mtok": 9.0}}))
    set_price_overrides(app, {"gpt-4o-mini": PriceOverride(0.5, 1.0)})
    assert price_overrides(app)["gpt-4o-mini"] == PriceOverride(0.5, 1.0)
    own = price_model_call(app, "acme:acme-llm-9", input_tokens=1_000_000, output_tokens=500_000)
    assert own.source == "override"
    assert own.cost_usd == pytest.approx(2.0)
    mini = price_model_call(app, "openai:gpt-4o-mini", input_tokens=2_000_000)
    assert mini.cost_usd == pytest.approx(1.0)
    # The agents layer's plain price_call picks the environment's overrides up too.
    from tether.observe.cost import price_call

    assert price_call("acme:acme-llm-9", output_tokens=1_000_000).cost_usd == pytest.approx(2.0)
    monkeypatch.setenv("TETHER_PRICE_OVERRIDES", "{not json")
    with pytest.raises(tether.UserError, match="TETHER_PRICE_OVERRIDES"):
        price_overrides(app)


def test_recorded_usage_can_be_repriced() -> None:
    meta = {n.REQUEST_MODEL: "gpt-4o-mini", n.PROVIDER_NAME: "openai",
            n.INPUT_TOKENS: 1200, n.OUTPUT_TOKENS: 300}
    assert reprice(meta).cost_usd == pytest.approx(genai_price("gpt-4o-mini", "openai", 1200, 300))
    assert reprice({}).source == "unpriced"


def test_spend_limit_holds_across_runs(store_url: str) -> None:
    app = make_app(store_url)
    one_run = sum(expected_three_models().values())
    # Enough for two runs of three calls, not a third: the limit reads the store, so it holds
    # across runs (and workers sharing the store).
    set_spend_limits(app, [SpendLimit("tenant", "acme", max_usd=one_run * 1.5,
                                      window=timedelta(days=1))])

    async def guarded_call() -> Any:
        return model_call("researcher", "gpt-4o-mini", 1200, 300)

    @app.workflow(name="guarded")
    async def guarded(ctx: tether.Context) -> str:
        await check_spend(ctx.app, ctx, Usage(llm_calls=1))
        await ctx.run_step("call", guarded_call)
        return "ok"

    app.run("titanium", {"models": 3}, labels={"tenant": "acme"})
    assert app.run("guarded", {}, labels={"tenant": "acme"}).status == "succeeded"
    assert app.run("guarded", {}, labels={"tenant": "globex"}).status == "succeeded"
    app.run("titanium", {"models": 3}, labels={"tenant": "acme"})
    blocked = app.run("guarded", {}, labels={"tenant": "acme"})
    assert blocked.status == "failed"
    assert blocked.error is not None
    assert blocked.error["type"] == "BudgetExceeded"
    message = blocked.error["message"]
    assert "tenant=acme" in message
    assert "per day" in message
    assert "spent" in message
    with pytest.raises(tether.BudgetExceeded, match="tenant=acme"):
        tether.RunHandle(app, blocked.id).result(timeout=5)
    assert app.run("guarded", {}, labels={"tenant": "globex"}).status == "succeeded"
    # Another worker process (another App on the same store) sees the same spend.
    other = make_app(store_url)
    set_spend_limits(other, spend_limits(app))

    class OtherCtx:
        labels = {"tenant": "acme"}
        run_id = "elsewhere"
        fatal = None

    with pytest.raises(tether.BudgetExceeded, match="per day"):
        other.portal.run(check_spend(other, OtherCtx(), Usage(llm_calls=1)))


def test_no_limits_means_no_query() -> None:
    class NoStore:
        async def label_spend(self, *args: Any) -> Any:
            raise AssertionError("queried the store with no limit configured")

    class FakeApp:
        extensions: dict[str, Any] = {}
        store = NoStore()

    class FakeCtx:
        labels = {"tenant": "acme"}
        run_id = "r"

    asyncio.run(check_spend(FakeApp(), FakeCtx(), Usage(llm_calls=1)))


def test_the_offline_demo_model_is_priced_at_borrowed_rates(tmp_path: Any, monkeypatch: Any) -> None:
    """The demo's scripted model shows dollars (gpt-4.1-mini's rates), never "unpriced"."""
    import importlib

    from tether.observe.cost import borrowed_rates

    rates = borrowed_rates("openai:gpt-4.1-mini")
    assert rates.input_per_mtok > 0 and rates.output_per_mtok > rates.input_per_mtok
    monkeypatch.setenv("TETHER_STORE", f"sqlite:///{tmp_path / 'demo.db'}")
    monkeypatch.delenv("TETHER_MODEL", raising=False)
    monkeypatch.setenv("TITANIUM_OUTBOX", str(tmp_path / "outbox.db"))
    import tether.examples.titanium as titanium

    titanium = importlib.reload(titanium)
    info = titanium.app.run("titanium", {"company": titanium.SAMPLE_COMPANY})
    assert info.status == "waiting"  # held for the send approval
    model_steps = [s for s in info.steps if s.usage.llm_calls]
    assert model_steps and all(s.usage.cost_usd > 0 for s in model_steps)
    assert info.usage.unpriced_calls == 0
    expected = sum(
        (s.usage.input_tokens * rates.input_per_mtok + s.usage.output_tokens * rates.output_per_mtok)
        / 1_000_000 for s in model_steps)
    assert abs(info.cost_usd - expected) < 1e-9
