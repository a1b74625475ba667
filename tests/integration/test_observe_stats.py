"""Stats from real runs: calls, latency percentiles, failures, refusals (apart), retries,
tokens and cost per call / per run, grouped by node, model, prompt version and label."""

from __future__ import annotations

import asyncio
import json
import statistics
from typing import Any

import pytest
from typer.testing import CliRunner

import tether
from tests.observe_fakes import model_call, tool_call
from tether.cli.common import cli
from tether.engine.control import RefuseRun
from tether.observe.stats import percentile, stats_report


def make_app(url: str) -> tether.App:
    app = tether.App(url)
    flaky_state = {"calls": 0}

    async def research(prompt: str) -> Any:
        return model_call("researcher", "gpt-4o-mini", 1000, 100, prompt_hash=prompt)

    async def flaky_search() -> Any:
        flaky_state["calls"] += 1
        if flaky_state["calls"] % 2 == 1:
            raise ConnectionError("search backend reset the connection")
        return tool_call("researcher", "search_company")

    async def draft() -> Any:
        return model_call("drafter", "gpt-4.1", 500, 300, prompt_hash="d1")

    async def broken() -> Any:
        raise ValueError("the model returned malformed JSON three times")

    @app.workflow(name="titanium")
    async def titanium(ctx: tether.Context, prompt: str = "p1", mode: str = "ok") -> str:
        if mode == "refuse":
            raise RefuseRun("asked to write a poem: outside B2B sales research")
        await ctx.run_step("research", research, (prompt,))
        await ctx.run_step("search", flaky_search,
                           retry=tether.Retry(max_attempts=3, initial_delay=0.0))
        if mode == "fail":
            await ctx.run_step("draft", broken)
        await ctx.run_step("draft", draft)
        return "sent"

    return app


def test_percentile_interpolates() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)


def test_stats_by_node_model_version_and_label(store_url: str) -> None:
    app = make_app(store_url)
    for team, prompt in (("sales", "p1"), ("sales", "p1"), ("support", "p2")):
        assert app.run("titanium", {"prompt": prompt}, labels={"team": team}).status == "succeeded"
    assert app.run("titanium", {"mode": "fail"}, labels={"team": "sales"}).status == "failed"
    assert app.run("titanium", {"mode": "refuse"}, labels={"team": "sales"}).status == "refused"

    nodes = {r.group["node"]: r for r in asyncio.run(stats_report(app, "node"))}
    researcher = nodes["researcher"]
    assert researcher.runs == 4
    assert researcher.calls == 4
    assert researcher.tool_calls == 4
    assert researcher.retries == 4  # every search needed a second attempt
    assert researcher.failures == 0
    # Latencies are the researcher steps' journaled durations (first attempt to outcome).
    durations = sorted(
        step.duration for run in app.list_runs(workflow="titanium", limit=50)
        for step in app.get_run(run.id).steps
        if step.meta.get("tether.node") == "researcher" and step.duration is not None
    )
    assert len(durations) == 8  # research and search, in each of the four runs that ran steps
    assert researcher.p50 == pytest.approx(statistics.median(durations), abs=3e-6)
    assert researcher.p95 == pytest.approx(percentile(durations, 95), abs=3e-6)
    drafter = nodes["drafter"]
    assert drafter.calls == 3
    assert drafter.input_tokens == 1500
    # gpt-4.1 at $2 per million input and $8 per million output tokens: 500 in, 300 out.
    one_draft = 500 * 2 / 1e6 + 300 * 8 / 1e6
    assert drafter.cost_usd == pytest.approx(3 * one_draft)
    assert drafter.cost_per_call == pytest.approx(one_draft)
    # The broken step carried no node: it is no node's figure, but it is not hidden either.
    assert None not in nodes
    steps = {r.group["step"]: r for r in asyncio.run(stats_report(app, "step"))}
    assert steps["draft"].failures == 1

    versions = {r.group["version"]: r for r in asyncio.run(stats_report(app, "version"))}
    assert versions["p1"].calls == 3
    assert versions["p2"].calls == 1

    teams = {r.group["team"]: r for r in asyncio.run(stats_report(app, "label:team"))}
    # The refusal is counted as such, not as a failure, and its run (no step) still counts.
    assert teams["sales"].refusals == 1
    assert teams["sales"].runs == 4
    assert teams["sales"].failures == 1
    assert teams["support"].refusals == 0
    assert teams["sales"].cost_per_run == pytest.approx(teams["sales"].cost_usd / 4)

    models = {r.group["model"]: r for r in asyncio.run(stats_report(app, "model"))}
    assert models["gpt-4o-mini"].calls == 4
    assert models["gpt-4.1"].calls == 3


def test_stats_cli_json_and_changes(sqlite_url: str) -> None:
    app = make_app(sqlite_url)
    app.run("titanium", {}, labels={"team": "sales"})
    app.close()
    from tether.cli import observe as _observe  # noqa: F401

    runner = CliRunner()
    result = runner.invoke(cli, ["stats", "--by", "node,model", "--since", "1h", "--json",
                                 "--store", sqlite_url])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    pairs = {(r["node"], r["model"]) for r in rows}
    assert ("researcher", "gpt-4o-mini") in pairs
    assert ("drafter", "gpt-4.1") in pairs
    assert all("p95_seconds" in r and "failure_rate" in r for r in rows)
    table = runner.invoke(cli, ["stats", "--store", sqlite_url])
    assert table.exit_code == 0
    assert "researcher" in table.output
    changes = runner.invoke(cli, ["stats", "--changes", "--json", "--store", sqlite_url])
    assert changes.exit_code == 0, changes.output
    assert json.loads(changes.output)["changes"] == []  # too few samples to claim anything
    bad = runner.invoke(cli, ["stats", "--since", "soon", "--store", sqlite_url])
    assert bad.exit_code == 2
    vague = runner.invoke(cli, ["stats", "--by", "label", "--store", sqlite_url])
    assert vague.exit_code == 2


def test_an_unknown_group_by_key_is_rejected_naming_the_valid_ones(sqlite_url: str) -> None:
    app = make_app(sqlite_url)
    assert app.run("titanium", {}, labels={"team": "sales"}).status == "succeeded"
    with pytest.raises(tether.UserError) as caught:
        asyncio.run(stats_report(app, "bogus"))
    assert "'bogus'" in str(caught.value) and "node" in str(caught.value)
    assert "team" in str(caught.value)  # the label keys that exist are offered
    # A label key that exists is accepted bare, and label:<key> always.
    assert asyncio.run(stats_report(app, "team"))
    assert asyncio.run(stats_report(app, "label:tenant")) is not None
