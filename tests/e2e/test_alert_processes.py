"""Alerts with two real `tether worker` processes and a local webhook, on both stores: each
alert is sent once although both workers detect it; a receiver that fails the first attempts
gets the same alert (same id) until it accepts; a worker SIGKILLed while its POST is in flight
leaves the alert to the other worker, which sends it again with the same id."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import tether
from tests.e2e.harness import client, tether_cli, wait_until, worker_pool
from tests.e2e.webhook_receiver import Receiver, receiving
from tether.store.base import NewRun, StepRecord

APP = "tests.e2e.alert_app:app"
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def observer(store_url: str, monkeypatch: pytest.MonkeyPatch) -> tether.App:
    monkeypatch.setenv("ALERT_STORE", store_url)
    app = client(store_url)
    app.portal.run(app.store.open())
    return app


def spend(app: tether.App, run_id: str, usd: float) -> None:
    """A finished run of tenant acme whose model call cost `usd`."""
    run = app.portal.run
    _, token, _ = run(app.store.create_run(
        NewRun(id=run_id, workflow="paid", version="1", input={}, labels={"tenant": "acme"}),
        owner="seed", lease_seconds=60))
    assert token is not None
    now = time.time()
    run(app.store.write_step(run_id, token, StepRecord(
        run_id=run_id, seq=1, name="chat", kind="step", status="completed", started_at=now - 1,
        finished_at=now, usage={"cost_usd": usd, "llm_calls": 1})))
    run(app.store.finish_run(run_id, token, status="succeeded", output=None))


def alerts_json(store_url: str) -> list[dict[str, object]]:
    done = tether_cli("alerts", "--json", store=store_url)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_two_workers_send_each_alert_once(
    tmp_path: Path, store_url: str, observer: tether.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    with receiving(Receiver()) as hook, worker_pool(tmp_path, store_url) as workers:
        monkeypatch.setenv("ALERT_WEBHOOK", hook.url)
        spend(observer, "paid-1", 0.85)
        observer.portal.run(observer.store.create_run(
            NewRun(id="orphan", workflow="slow", version="9", input={"seconds": 0})))
        for name in ("w1", "w2"):
            workers.start(name, app=APP)
        stuck = observer.start("slow", {"seconds": 120})

        def kinds() -> set[str]:
            return {p[0]["kind"] for p in hook.by_id().values()}

        wait_until(lambda: kinds() >= {"stuck", "unserved", "spend"}, timeout=60,
                   what="stuck, unserved and spend alerts at the webhook")
        # A later occurrence, delivered after both workers re-detected the first ones on
        # many passes: by then a duplicate of those would have been sent too.
        spend(observer, "paid-2", 0.2)
        wait_until(lambda: len(hook.by_id()) >= 4, timeout=60, what="the 100% spend alert")
        posts = hook.by_id()
        listed = alerts_json(store_url)
    assert sorted(p[0]["kind"] for p in posts.values()) == ["spend", "spend", "stuck", "unserved"]
    assert all(len(sent) == 1 for sent in posts.values()), posts
    assert all(p[0]["idempotency_key"] == alert_id for alert_id, p in posts.items())
    assert {a["id"] for a in listed} == set(posts)
    assert all(a["state"] == "delivered" and a["attempts"] == 1 for a in listed), listed
    stuck_alert = next(p[0] for p in posts.values() if p[0]["kind"] == "stuck")
    assert stuck_alert["subject"] == stuck.id


def test_a_failing_receiver_gets_the_same_alert_until_it_accepts(
    tmp_path: Path, store_url: str, observer: tether.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    with receiving(Receiver(fail_first=2)) as hook, worker_pool(tmp_path, store_url) as workers:
        monkeypatch.setenv("ALERT_WEBHOOK", hook.url)
        for name in ("w1", "w2"):
            workers.start(name, app=APP)
        spend(observer, "paid-1", 0.9)
        [alert] = wait_until(
            lambda: [a for a in alerts_json(store_url) if a["state"] == "delivered"],
            timeout=60, what="the spend alert delivered")
        posts = hook.by_id()
    assert [p["attempt"] for p in posts[str(alert["id"])]] == [1, 2, 3]
    assert alert["attempts"] == 3 and str(alert["last_error"]).startswith("HTTP 500")
    listing = tether_cli("alerts", "--kind", "spend", store=store_url)
    assert "delivered" in listing.stdout and "tenant=acme" in listing.stdout


def test_a_worker_killed_mid_delivery_leaves_the_alert_to_the_other(
    tmp_path: Path, store_url: str, observer: tether.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_LEASE", "4")
    monkeypatch.setenv("ALERT_TIMEOUT", "3")
    with receiving(Receiver(hold_first=True)) as hook, worker_pool(tmp_path, store_url) as workers:
        monkeypatch.setenv("ALERT_WEBHOOK", hook.url)
        procs = {name: workers.start(name, app=APP) for name in ("w1", "w2")}
        spend(observer, "paid-1", 0.9)
        wait_until(lambda: hook.posts, timeout=60, what="the first POST at the webhook")
        [held] = observer.portal.run(observer.store.list_alerts())
        assert held.lease_owner is not None
        pid = int(held.lease_owner.split(":")[0].rsplit("-", 1)[1])
        victim = next(name for name, proc in procs.items() if proc.pid == pid)
        workers.kill(victim)
        hook.release.set()
        wait_until(lambda: [a for a in alerts_json(store_url) if a["state"] == "delivered"],
                   timeout=60, what="the alert delivered by the surviving worker")
        posts = hook.by_id()
        [alert] = observer.portal.run(observer.store.list_alerts())
        survivor = next(proc for name, proc in procs.items() if name != victim)
        assert survivor.poll() is None
    [sent] = posts.values()
    assert [p["id"] for p in sent] == [alert.id, alert.id]
    assert [p["attempt"] for p in sent] == [1, 2]
    assert alert.attempts == 2 and alert.state == "delivered"


def test_alerts_test_pings_the_webhook_from_the_command(
    tmp_path: Path, store_url: str, observer: tether.App
) -> None:
    with receiving(Receiver()) as hook:
        done = tether_cli("alerts", "test", "--webhook", hook.url, store=store_url)
        assert done.returncode == 0, done.stderr
        assert "delivered to" in done.stdout
        [[post]] = hook.by_id().values()
    assert post["kind"] == "test"
    closed = tether_cli("alerts", "test", "--webhook", "http://127.0.0.1:9/hook", store=store_url)
    assert closed.returncode == 1 and "not accepted" in closed.stderr
    assert "ConnectError" in closed.stderr
    states = sorted(str(a["state"]) for a in alerts_json(store_url))
    assert states == ["delivered", "failed"]
    bad = tether_cli("alerts", "--state", "lost", store=store_url)
    assert bad.returncode == 2 and "lost" in bad.stderr and "pending" in bad.stderr


def test_the_worker_command_sends_alerts_to_the_webhook_in_its_environment(
    tmp_path: Path, store_url: str, observer: tether.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An app that configures no alerts: $TETHER_ALERT_WEBHOOK alone turns them on.
    monkeypatch.setenv("TETHER_ALERT_WEBHOOK", "https://hooks.example.com/T000/secret-path")
    with worker_pool(tmp_path, store_url) as workers:
        workers.start("w1", app="tests.e2e.schedule_app:app")
        line = wait_until(
            lambda: next((ln for ln in workers.log("w1").splitlines() if "alerts: watching" in ln),
                         None),
            timeout=60, what="the worker saying it watches for alerts")
    assert "stuck, change, spend, unserved" in line
    assert "https://hooks.example.com/…" in line and "secret-path" not in line
