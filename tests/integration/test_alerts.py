"""Alerts end to end in one process, on both stores: two workers of one App watch the same
store; each condition is recorded once and delivered once to a webhook (an in-memory httpx
transport that records every POST), a failing receiver is retried with the same id, and one
that never answers 2xx ends ``failed`` with its error."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import tether
from tether.observe.alerts import AlertWatch, alert_config, configure, configure_from_env
from tether.observe.limits import SpendLimit, set_spend_limits
from tether.store.base import AlertRecord, NewRun, StepRecord, Store

HOOK = "http://hook.test/alerts"


class Receiver:
    """The webhook: every POST it got, and the status it answers (a function of the attempt)."""

    def __init__(self, status: Callable[[int], int] = lambda attempt: 200) -> None:
        self.posts: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []
        self.status = status

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.posts.append(body)
        self.headers.append(request.headers)
        return httpx.Response(self.status(int(body["attempt"])), text="nope")

    def ids(self) -> list[str]:
        return [p["id"] for p in self.posts]


def make_app(url: str, receiver: Receiver, **options: Any) -> tether.App:
    app = tether.App(url, lease_seconds=3.0)

    @app.step
    async def think(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    @app.workflow(name="slow")
    async def slow(ctx: tether.Context, seconds: float) -> str:
        return await think(seconds)

    settings: dict[str, Any] = {
        "every": 0.2, "stuck_after": 1.0, "unserved_after": 0.0, "backoff": 0.05,
        "changes_every": 3600.0, "transport": httpx.MockTransport(receiver.handler),
        **options,
    }
    configure(app, HOOK, **settings)
    set_spend_limits(app, [SpendLimit("tenant", "acme", max_usd=1.0)])
    return app


async def spent(store: Store, usd: float, tenant: str = "acme") -> None:
    """A finished run labelled ``tenant`` whose one model call cost `usd`."""
    run_id = f"paid-{tenant}-{usd}"
    _, token, _ = await store.create_run(
        NewRun(id=run_id, workflow="paid", version="1", input={}, labels={"tenant": tenant}),
        owner="seed", lease_seconds=60,
    )
    assert token is not None
    now = time.time()
    await store.write_step(run_id, token, StepRecord(
        run_id=run_id, seq=1, name="chat", kind="step", status="completed", started_at=now - 1,
        finished_at=now, usage={"cost_usd": usd, "llm_calls": 1},
    ))
    await store.finish_run(run_id, token, status="succeeded", output=None)


async def until(check: Callable[[], Any], deadline: float, what: str) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not within {deadline}s")


async def run_workers(apps: list[tether.App], body: Callable[[], Any]) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(a.run_worker_async(stop=stop, grace_period=0.5)) for a in apps]
    try:
        await body()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for a in apps:
            await a.store.close()


async def test_each_alert_is_recorded_and_delivered_once_with_two_workers(store_url: str) -> None:
    receiver = Receiver()
    apps = [make_app(store_url, receiver) for _ in range(2)]
    store = apps[0].store
    await store.open()
    await spent(store, 0.85)
    # A run of a version no worker serves (a deploy dropped v9).
    await store.create_run(NewRun(id="orphan", workflow="slow", version="9", input={"seconds": 0}))
    slow = await apps[0].start_async("slow", {"seconds": 60})

    async def body() -> None:
        async def delivered() -> list[AlertRecord] | None:
            alerts = await store.list_alerts(state="delivered")
            return alerts if {a.kind for a in alerts} >= {"stuck", "unserved", "spend"} else None

        alerts = await until(delivered, 30, "stuck, unserved and spend alerts delivered")
        # Both workers keep evaluating for a while: nothing is recorded or sent twice.
        await asyncio.sleep(1.0)
        alerts = await store.list_alerts()
        by_kind = {a.kind: a for a in alerts}
        assert sorted(a.kind for a in alerts) == ["spend", "stuck", "unserved"], alerts
        assert sorted(receiver.ids()) == sorted(a.id for a in alerts)
        stuck = by_kind["stuck"]
        assert stuck.subject == slow.id and "stuck" in stuck.summary
        assert by_kind["unserved"].subject == "slow v9"
        assert "80%" in by_kind["spend"].summary and "tenant=acme" in by_kind["spend"].summary
        post = next(p for p in receiver.posts if p["kind"] == "stuck")
        assert post["details"]["run_id"] == slow.id
        assert post["text"].startswith("[tether stuck] run ")
        assert all(h["idempotency-key"] == p["id"]
                   for h, p in zip(receiver.headers, receiver.posts, strict=True))
        assert all(a.attempts == 1 and a.delivered_at for a in alerts)

    await run_workers(apps, body)


async def test_a_failing_receiver_is_retried_with_the_same_id(store_url: str) -> None:
    receiver = Receiver(lambda attempt: 503 if attempt < 3 else 204)
    app = make_app(store_url, receiver, kinds=("spend",))
    await app.store.open()
    await spent(app.store, 1.2)

    async def body() -> None:
        async def delivered() -> list[AlertRecord]:
            return await app.store.list_alerts(state="delivered")

        alerts = await until(delivered, 30, "the spend alerts delivered")
        await until(lambda: _count(app.store, 2), 30, "both thresholds delivered")
        alerts = await app.store.list_alerts()
        assert {a.summary.split(" passed ")[1][:4] for a in alerts} == {"80%:", "100%"}
        for alert in alerts:
            sent = [p for p in receiver.posts if p["id"] == alert.id]
            assert [p["attempt"] for p in sent] == [1, 2, 3]
            assert alert.attempts == 3 and alert.state == "delivered"
            assert alert.last_error is not None and alert.last_error.startswith("HTTP 503")

    await run_workers([app], body)


async def _count(store: Store, n: int) -> bool:
    return len(await store.list_alerts(state="delivered")) >= n


async def test_a_receiver_that_never_accepts_leaves_the_alert_failed(store_url: str) -> None:
    receiver = Receiver(lambda attempt: 500)
    app = make_app(store_url, receiver, kinds=("spend",), max_attempts=2,
                   spend_thresholds=(0.5,))
    await app.store.open()
    await spent(app.store, 0.6)

    async def body() -> None:
        async def failed() -> list[AlertRecord]:
            return await app.store.list_alerts(state="failed")

        [alert] = await until(failed, 30, "the alert given up")
        assert alert.attempts == 2 and alert.last_error == "HTTP 500: nope"
        assert [p["attempt"] for p in receiver.posts] == [1, 2]

    await run_workers([app], body)


async def test_spend_under_the_thresholds_raises_nothing(store_url: str) -> None:
    receiver = Receiver()
    app = make_app(store_url, receiver)
    await app.store.open()
    try:
        await spent(app.store, 0.5)
        await spent(app.store, 5.0, tenant="other")  # no limit on this tenant
        config = alert_config(app)
        assert config is not None
        assert await AlertWatch(app, config).evaluate() == []
        await spent(app.store, 0.31)
        [alert] = await AlertWatch(app, config).evaluate()
        assert alert.kind == "spend" and alert.details and alert.details["threshold"] == 0.8
        # A second detector (another worker) finds the same occurrence: not recorded again.
        assert await AlertWatch(app, config).evaluate() == []
    finally:
        await app.store.close()


def test_the_worker_command_reads_the_webhook_from_the_environment(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tether.App(sqlite_url)
    assert configure_from_env(app) is None
    monkeypatch.setenv("TETHER_ALERT_WEBHOOK", "https://hooks.example.com/x")
    config = configure_from_env(app)
    assert config is not None and config.webhook == "https://hooks.example.com/x"
    # An App that configured its own webhook keeps it.
    configure(app, "https://mine.example.com/", every=2.0)
    config = configure_from_env(app)
    assert config is not None and (config.webhook, config.every) == ("https://mine.example.com/", 2.0)


async def test_a_flagged_prompt_change_is_one_alert_however_often_it_is_checked(
    store_url: str,
) -> None:
    from tests.observe_data import Call, write_calls

    receiver = Receiver()
    app = make_app(store_url, receiver, kinds=("change",), changes_every=0.001)
    await app.store.open()
    try:
        now = time.time()
        calls = [Call("drafter", now - 3000 + i, 1.0 + (i % 5) * 0.01, prompt_hash="p1")
                 for i in range(30)]
        calls += [Call("drafter", now - 1000 + i, 2.0 + (i % 5) * 0.01, prompt_hash="p2")
                  for i in range(30)]
        await write_calls(app.store, calls)
        config = alert_config(app)
        assert config is not None
        watches = [AlertWatch(app, config) for _ in range(3)]  # three workers
        recorded = [a for w in watches for a in await w.evaluate()]
        recorded += [a for w in watches for a in await w.evaluate()]
        [alert] = recorded
        assert alert.kind == "change" and alert.subject == "drafter"
        assert "latency" in alert.summary and "p1" in alert.summary and "p2" in alert.summary
        assert alert.details is not None and alert.details["candidate"] == "p2"
    finally:
        await app.store.close()


def test_app_alerts_and_the_environment_configure_the_same_watch(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tether.engine.background import background_tasks

    app = tether.App(sqlite_url)
    config = app.alerts("https://hooks.example.com/x", every=2.0, kinds=("stuck",))
    assert alert_config(app) is config and config.every == 2.0
    assert len(background_tasks(app)) == 1
    # A worker (or app.run) of an App that configured nothing picks $TETHER_ALERT_WEBHOOK up.
    monkeypatch.setenv("TETHER_ALERT_WEBHOOK", "https://hooks.example.com/env")
    other = tether.App(sqlite_url)
    other.prepare()
    found = alert_config(other)
    assert found is not None and found.webhook == "https://hooks.example.com/env"
    assert len(background_tasks(other)) == 1
