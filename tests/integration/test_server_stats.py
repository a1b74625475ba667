"""Stats, cost, stuck/slow, per-node figures and budgets on the API and pages, over runs with
known usage on known models (the reports are the observe layer's)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

import tether
from tether.observe import names as n
from tether.server import create_app
from tether.server.auth import Auth
from tether.store.base import NewRun

pytestmark = pytest.mark.timeout(60)

LOCAL = Auth(local_user="tester")
"""Local mode: no principals in the store, every request acts as this OS user."""


def build(store_url: str) -> tether.App:
    app = tether.App(store_url)

    def chat(model: str, cost: float | None) -> str:
        step = tether.current_step()
        step.set_meta(**{n.OPERATION_NAME: n.OP_CHAT, n.REQUEST_MODEL: model,
                         n.RESPONSE_MODEL: model, n.NODE: "drafter"})
        step.add_usage(tether.Usage(
            llm_calls=1, input_tokens=1000, output_tokens=200,
            cost_usd=cost or 0.0, unpriced_calls=0 if cost is not None else 1,
        ))
        return model

    @app.workflow(name="draft")
    async def draft(ctx: tether.Context, models: list[list[Any]]) -> list[str]:
        return [await ctx.run_step("chat", chat, (model, cost)) for model, cost in models]

    return app


@pytest.fixture
def app(store_url: str) -> Iterator[tether.App]:
    app = build(store_url)
    # Two teams; the sales run uses two priced models and one the price table does not know.
    app.run("draft", {"models": [["gpt-4.1", 0.01], ["gpt-4.1-mini", 0.002], ["house-llm", None]]},
            labels={"team": "sales"})
    app.run("draft", {"models": [["gpt-4.1", 0.01]]}, labels={"team": "support"})
    yield app
    app.close()


@pytest.fixture
def client(app: tether.App) -> Iterator[TestClient]:
    with TestClient(create_app(app, auth=LOCAL)) as client:
        yield client


def test_cost_attributes_each_call_to_its_team_and_model(client: TestClient) -> None:
    report = client.get("/api/cost", params={"by": "team,model", "since": "1h"}).json()
    assert report["groups"] == ["team", "model"]
    rows = {(r["team"], r["model"]): r for r in report["rows"]}
    assert set(rows) == {("sales", "gpt-4.1"), ("sales", "gpt-4.1-mini"),
                         ("sales", "house-llm"), ("support", "gpt-4.1")}
    assert rows[("sales", "gpt-4.1")]["cost_usd"] == pytest.approx(0.01)
    assert rows[("sales", "gpt-4.1-mini")]["cost_usd"] == pytest.approx(0.002)
    assert rows[("sales", "house-llm")]["unpriced_calls"] == 1
    assert rows[("sales", "house-llm")]["cost_usd"] == 0
    assert report["total"]["cost_usd"] == pytest.approx(0.022)
    assert (report["total"]["calls"], report["total"]["unpriced_calls"]) == (4, 1)


def test_stats_by_node_count_calls_latency_and_cost(client: TestClient) -> None:
    report = client.get("/api/stats", params={"by": "node"}).json()
    (row,) = report["rows"]
    assert row["node"] == "drafter"
    assert (row["runs"], row["calls"], row["failures"]) == (2, 4, 0)
    assert row["p95_seconds"] is not None and row["p95_seconds"] >= row["p50_seconds"]
    assert row["cost_usd"] == pytest.approx(0.022)
    assert report["changes"] == []  # only asked for with changes=true; none here anyway


def test_bad_report_parameters_name_the_field(client: TestClient) -> None:
    since = client.get("/api/stats", params={"since": "last week"})
    assert since.status_code == 422
    assert since.json()["error"]["fields"][0]["field"] == "since"
    by = client.get("/api/cost", params={"by": "label"})
    assert by.status_code == 422
    assert by.json()["error"]["fields"][0]["field"] == "by"


def test_cost_and_stats_pages(client: TestClient) -> None:
    cost = client.get("/cost", params={"by": "team,model"}).text
    assert "$0.0220 + 1 unpriced" in cost
    assert "1 call(s) have no known price" in cost
    assert "<td>house-llm</td>" in cost and "<td>support</td>" in cost
    stats = client.get("/stats", params={"by": "node,model"}).text
    assert "<td>drafter</td>" in stats and "<td>gpt-4.1-mini</td>" in stats
    assert 'href="/stats"' in stats and 'href="/cost"' in stats


def test_a_run_whose_worker_vanished_shows_as_stuck(app: tether.App, client: TestClient) -> None:
    # A worker claims a run and then stops heartbeating (it died, or is paused).
    new = NewRun(id="orphan-1", workflow="draft", version="1", input={"models": []}, labels={})
    asyncio.run(app.store.create_run(new, owner="vanished-worker", lease_seconds=0.05))
    deadline = time.monotonic() + 10
    while True:
        runs = {r["id"]: r for r in client.get("/api/runs").json()["runs"]}
        health = runs["orphan-1"]["health"]
        if health["verdict"] == "stuck" or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert health["verdict"] == "stuck"
    assert "vanished-worker" in health["reason"] and "heartbeat lost" in health["reason"]
    finished = [r for r in runs.values() if r["status"] == "succeeded"]
    assert finished and all(r["health"]["verdict"] == "ok" for r in finished)
    page = client.get("/runs").text
    assert 'data-verdict="stuck"' in page and "heartbeat lost" in page
    detail = client.get("/runs/orphan-1").text
    assert 'data-verdict="stuck"' in detail


def test_run_page_shows_cost_and_latency_per_node(app: tether.App, client: TestClient) -> None:
    sales = next(r for r in app.list_runs() if r.labels.get("team") == "sales")
    html = client.get(f"/runs/{sales.id}").text
    row = html.split('<tr data-node="drafter">', 1)[1].split("</tr>", 1)[0]
    assert "gpt-4.1, gpt-4.1-mini, house-llm" in row
    assert "$0.0120 + 1 unpriced" in row and "3,600" in row


def test_a_run_paused_on_its_budget_is_resumed_by_raising_it(
    app: tether.App, client: TestClient
) -> None:
    info = app.run(
        "draft", {"models": [["gpt-4.1", 0.01]] * 3},
        budget=tether.Budget(max_llm_calls=1, on_exceed="suspend"),
    )
    assert (info.status, info.waiting_for) == ("waiting", "tether.budget")
    html = client.get(f"/runs/{info.id}").text
    assert "paused on its budget" in html
    assert f'data-api="/api/runs/{info.id}/budget"' in html
    assert "max_llm_calls" in html  # the current budget, to edit
    bad = client.post(f"/api/runs/{info.id}/budget", json={"max_llm_calls": -1})
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "max_llm_calls"
    response = client.post(f"/api/runs/{info.id}/budget", json={"max_llm_calls": 5})
    assert response.status_code == 200
    assert response.json()["status"] == "queued" and response.json()["budget"]["max_llm_calls"] == 5
    info = app.run("draft", run_id=info.id)
    assert info.status == "succeeded" and len(info.output) == 3
    ended = client.post(f"/api/runs/{info.id}/budget", json={"max_llm_calls": 9})
    assert ended.status_code == 409


def test_charts_draw_each_group_over_time_with_choices_from_the_data(client: TestClient) -> None:
    cost = client.get("/cost", params={"by": "team", "since": "1h"}).text
    # The group-by choices are selects built from the data: tether's dimensions and the
    # label keys runs carry; there is no free-text box to type `bogus` into.
    assert '<select name="by"' in cost and '<input name="by"' not in cost
    assert '<option value="team" selected>team</option>' in cost
    assert '<option value="model"' in cost
    spend = re.search(r'<svg class="chart" id="chart-spend".*?</svg>', cost, re.S)
    assert spend is not None
    assert {'data-series="sales"', 'data-series="support"'} <= set(
        re.findall(r'data-series="[^"]+"', spend.group(0)))
    stats = client.get("/stats", params={"by": "model", "since": "1h"}).text
    for chart in ("chart-p95", "chart-p50", "chart-failures", "chart-spend"):
        assert f'id="{chart}"' in stats
    assert 'data-legend="gpt-4.1-mini"' in stats
    assert client.get("/stats", params={"by": "bogus"}).status_code == 422
