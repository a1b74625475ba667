"""``GET /metrics`` and ``GET /api/alerts`` on both stores, and the same figures as
OpenTelemetry metrics through an in-memory reader."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import tether
from tether.access.principals import create_principal
from tether.observe import names as n
from tether.server import create_app
from tether.server.auth import Auth
from tether.store.base import NewAlert, NewRun, StepRecord

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def app(store_url: str) -> Iterator[tether.App]:
    app = tether.App(store_url)

    @app.workflow(name="hello")
    async def hello(ctx: tether.Context) -> str:
        return "hi"

    app.portal.run(app.store.open())
    yield app
    app.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def model_call(app: tether.App, run_id: str, seq: int, *, node: str, model: str, seconds: float,
               tokens: tuple[int, int], usd: float, labels: dict[str, str]) -> None:
    """A finished run with one journaled model call (what an agent node writes)."""
    run = app.portal.run
    _, token, created = run(app.store.create_run(
        NewRun(id=run_id, workflow="agent", version="1", input={}, labels=labels),
        owner="seed", lease_seconds=60,
    ))
    assert token is not None and created
    now = time.time()
    assert run(app.store.write_step(run_id, token, StepRecord(
        run_id=run_id, seq=seq, name="chat", kind="step", status="completed",
        started_at=now - seconds, finished_at=now,
        usage={"llm_calls": 1, "input_tokens": tokens[0], "output_tokens": tokens[1],
               "cost_usd": usd},
        meta={n.NODE: node, n.RESPONSE_MODEL: model, n.OPERATION_NAME: n.OP_CHAT},
    )))
    assert run(app.store.finish_run(run_id, token, status="succeeded", output=None))


def test_metrics_show_runs_backlog_latency_tokens_and_spend(app: tether.App) -> None:
    api = create_app(app, auth=Auth(local_user="tester"), metric_labels=["team"])
    with TestClient(api) as client:
        first = samples(client.get("/metrics").text)
        assert first[("tether_workers_live", ())] == 0
        for i in range(3):
            app.start("hello", {}, run_id=f"queued-{i}")
        app.run("hello", {}, run_id="done")
        app.portal.run(app.store.create_run(NewRun(
            id="in-queue", workflow="hello", version=None, input={}, queue="tenants",
            queue_key="acme")))
        model_call(app, "r1", 1, node="researcher", model="gpt-x", seconds=0.2,
                   tokens=(100, 20), usd=0.01, labels={"team": "sales"})
        model_call(app, "r2", 1, node="researcher", model="gpt-x", seconds=3.0,
                   tokens=(50, 5), usd=0.02, labels={"team": "support"})
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        got = samples(response.text)
        assert got[("tether_runs", (("status", "queued"), ("workflow", "hello")))] == 4
        assert got[("tether_runs", (("status", "succeeded"), ("workflow", "hello")))] == 1
        assert got[("tether_runs", (("status", "succeeded"), ("workflow", "agent")))] == 2
        assert got[("tether_queue_depth", (("queue", "none"),))] == 3
        assert got[("tether_queue_depth", (("queue", "tenants"),))] == 1
        assert got[("tether_queue_oldest_wait_seconds", (("queue", "none"),))] >= 0
        hist = (("node", "researcher"),)
        assert got[("tether_step_duration_seconds_count", hist)] == 2
        assert got[("tether_step_duration_seconds_sum", hist)] == pytest.approx(3.2, abs=0.01)
        assert got[("tether_step_duration_seconds_bucket", (("le", "0.25"), ("node", "researcher")))] == 1
        assert got[("tether_step_duration_seconds_bucket", (("le", "+Inf"), ("node", "researcher")))] == 2
        assert got[("tether_tokens_total", (("direction", "input"), ("model", "gpt-x"), ("team", "sales")))] == 100
        assert got[("tether_tokens_total", (("direction", "output"), ("model", "gpt-x"), ("team", "support")))] == 5
        assert got[("tether_cost_usd_total", (("model", "gpt-x"), ("team", "support")))] == pytest.approx(0.02)
        assert got[("tether_model_calls_total", (("model", "gpt-x"), ("team", "sales")))] == 1
        # The workflow's own steps count too (the run executed here has none: it just returns).
        # A second scrape counts nothing twice.
        again = samples(client.get("/metrics").text)
        assert again[("tether_step_duration_seconds_count", hist)] == 2
        assert again[("tether_tokens_total", (("direction", "input"), ("model", "gpt-x"), ("team", "sales")))] == 100


def test_label_values_past_the_cap_count_as_other(app: tether.App) -> None:
    from tether.observe.metrics import Metrics

    api = create_app(app, auth=Auth(local_user="tester"), metric_labels=["tenant"])
    api.state.metrics = Metrics(app.store, labels=["tenant"], max_label_values=2)
    with TestClient(api) as client:
        client.get("/metrics")
        for i in range(4):
            model_call(app, f"t{i}", 1, node="n", model="m", seconds=0.1, tokens=(1, 1),
                       usd=0.001, labels={"tenant": f"tenant-{i}"})
        got = samples(client.get("/metrics").text)
        tenants = {dict(labels)["tenant"] for name, labels in got if name == "tether_model_calls_total"}
        assert tenants == {"tenant-0", "tenant-1", "other"}
        assert got[("tether_model_calls_total", (("model", "m"), ("tenant", "other")))] == 2


def test_metrics_and_alerts_need_a_viewer_token(app: tether.App) -> None:
    run = app.portal.run
    _, viewer = run(create_principal(app.store, "grafana", "viewer"))
    run(app.store.record_alert(NewAlert(key="k", kind="stuck", subject="run-1", summary="stuck!")))
    with TestClient(create_app(app, auth=Auth())) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/api/alerts").status_code == 401
        bearer = {"Authorization": f"Bearer {viewer}"}
        assert client.get("/metrics", headers=bearer).status_code == 200
        body: dict[str, Any] = client.get("/api/alerts", headers=bearer).json()
        assert [(a["kind"], a["subject"], a["state"]) for a in body["alerts"]] == [
            ("stuck", "run-1", "pending")
        ]
        bad = client.get("/api/alerts?kind=bogus", headers=bearer)
        assert bad.status_code == 400 and "bogus" in bad.json()["error"]["message"]


def test_the_same_figures_as_opentelemetry_metrics(app: tether.App) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from tether.observe.metrics import Metrics, instrument_metrics

    figures = Metrics(app.store, labels=["team"])
    reader = InMemoryMetricReader()
    provider = instrument_metrics(app, reader, metrics=figures)
    try:
        app.start("hello", {}, run_id="waiting-1")
        model_call(app, "r1", 1, node="researcher", model="gpt-x", seconds=0.5,
                   tokens=(10, 2), usd=0.5, labels={"team": "sales"})
        data = reader.get_metrics_data()
        points: dict[str, list[Any]] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points[metric.name] = list(metric.data.data_points)
        runs = {(p.attributes["workflow"], p.attributes["status"]): p.value for p in points["tether.runs"]}
        assert runs == {("hello", "queued"): 1, ("agent", "succeeded"): 1}
        [cost] = points["tether.cost"]
        assert cost.value == pytest.approx(0.5)
        assert dict(cost.attributes) == {"gen_ai.request.model": "gpt-x", "team": "sales"}
        tokens = {p.attributes["gen_ai.token.type"]: p.value for p in points["tether.tokens"]}
        assert tokens == {"input": 10, "output": 2}
        # The step histogram is recorded as the collection counts the step: next collection.
        data = reader.get_metrics_data()
        histogram = [m for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics
                     if m.name == "tether.step.duration"]
        [point] = histogram[0].data.data_points
        assert point.count == 1 and point.sum == pytest.approx(0.5, abs=0.01)
        assert dict(point.attributes) == {"node": "researcher", "outcome": "completed"}
    finally:
        provider.shutdown()
