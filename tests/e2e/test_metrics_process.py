"""``GET /metrics`` of a real `tether serve` process while two real workers run, on both
stores: the runs by status are the ones `tether runs` lists, the live workers and the steps
the workers journaled are counted, and a scraper needs a viewer token."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import tether
from tests.e2e.harness import client, tether_cli, wait_until, worker_pool
from tests.e2e.served import serve
from tether.access.principals import create_principal
from tether.store.base import NewRun

APP = "tests.e2e.alert_app:app"
pytestmark = pytest.mark.timeout(180)


def scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def test_metrics_of_a_served_store_match_what_tether_runs_lists(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_STORE", store_url)
    monkeypatch.delenv("ALERT_WEBHOOK", raising=False)
    observer: tether.App = client(store_url)
    run = observer.portal.run
    run(observer.store.open())
    _, token = run(create_principal(observer.store, "grafana", "viewer"))
    with serve(store_url) as server, worker_pool(tmp_path, store_url) as workers:
        for name in ("w1", "w2"):
            workers.start(name, app=APP)
        done = [observer.start("slow", {"seconds": 0}) for _ in range(3)]
        busy = observer.start("slow", {"seconds": 120})
        for i in range(2):  # a version no worker serves: they stay queued
            run(observer.store.create_run(
                NewRun(id=f"old-{i}", workflow="slow", version="0", input={"seconds": 0})))
        observer.cancel(observer.start("slow", {"seconds": 0}, delay=3600).id)
        for handle in done:
            assert handle.result(timeout=60) == "done"
        wait_until(lambda: observer.get_run(busy.id).status == "running", timeout=60,
                   what="the long run running")
        with server.client() as anonymous:
            assert anonymous.get("/metrics").status_code == 401
        with server.client(token) as http:
            def figures() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
                got = scrape(http.get("/metrics").text)
                live = got.get(("tether_workers_live", frozenset()))
                think = got.get(("tether_step_duration_seconds_count",
                                 frozenset({("node", "think")})))
                return got if live == 2 and think == 3 else None

            got = wait_until(figures, timeout=60, what="both workers and three steps counted")
        listed = tether_cli("runs", "--json", "--limit", "100", store=store_url)
        assert listed.returncode == 0, listed.stderr
    by_status = Counter(r["status"] for r in json.loads(listed.stdout))
    exported = {
        dict(labels)["status"]: value for (name, labels), value in got.items()
        if name == "tether_runs" and dict(labels)["workflow"] == "slow"
    }
    assert exported == dict(by_status)
    assert exported == {"succeeded": 3, "running": 1, "queued": 2, "cancelled": 1}
    assert got[("tether_steps_total", frozenset({("node", "think"), ("outcome", "completed")}))] == 3
    assert got[("tether_queue_depth", frozenset({("queue", "none")}))] == 2
