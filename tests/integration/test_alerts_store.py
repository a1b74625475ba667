"""The alerts table on both stores: each occurrence recorded once however many detectors race,
quiet periods per series, leased delivery attempts, and the metric figures."""

from __future__ import annotations

import asyncio
import time

import pytest

from tether.store import open_store
from tether.store.base import NewAlert, NewRun, Store


async def _opened(url: str) -> Store:
    store = open_store(url)
    await store.open()
    return store


async def test_one_occurrence_is_recorded_once_by_racing_detectors(store_url: str) -> None:
    stores = [await _opened(store_url) for _ in range(4)]
    try:
        alert = NewAlert(key="stuck:run-1:3", kind="stuck", subject="run-1", summary="stuck")
        results = await asyncio.gather(*(s.record_alert(alert) for s in stores for _ in range(5)))
        assert sum(r is not None for r in results) == 1
        listed = await stores[0].list_alerts()
        assert [(a.id, a.state, a.attempts) for a in listed] == [(alert.id, "pending", 0)]
    finally:
        for s in stores:
            await s.close()


async def test_a_series_is_quiet_for_its_period(store_url: str) -> None:
    stores = [await _opened(store_url) for _ in range(3)]
    try:
        def occurrence(bucket: int, quiet: float) -> NewAlert:
            return NewAlert(
                key=f"spend:tenant=acme:0.8@{bucket}", kind="spend", subject="tenant=acme",
                summary="80%", series="spend:tenant=acme:0.8", quiet_seconds=quiet,
            )

        # Two workers evaluating on either side of a window boundary compute two keys: the
        # series' quiet period still records one alert.
        results = await asyncio.gather(
            *(s.record_alert(occurrence(b, 3600)) for s in stores for b in (1, 2))
        )
        assert sum(r is not None for r in results) == 1
        # Without a quiet period a new occurrence of the series is recorded.
        assert await stores[0].record_alert(occurrence(3, 0)) is not None
        assert len(await stores[0].list_alerts(kind="spend")) == 2
    finally:
        for s in stores:
            await s.close()


async def test_delivery_is_leased_retried_and_fenced(store_url: str) -> None:
    a, b = await _opened(store_url), await _opened(store_url)
    try:
        recorded = await a.record_alert(
            NewAlert(key="k1", kind="test", subject="webhook", summary="hello")
        )
        assert recorded is not None
        got_a, got_b = await asyncio.gather(
            a.claim_alerts("worker-a", limit=10, lease_seconds=0.3),
            b.claim_alerts("worker-b", limit=10, lease_seconds=0.3),
        )
        assert len(got_a) + len(got_b) == 1
        first, other = ("worker-a", a) if got_a else ("worker-b", b)
        # The holder failed; it is pending again from the retry time, and not claimable before.
        assert await other.settle_alert(
            recorded.id, first, delivered=False, error="HTTP 500", retry_at=time.time() + 0.2
        )
        assert await a.claim_alerts("worker-c", limit=10, lease_seconds=0.3) == []
        deadline = time.monotonic() + 10
        claimed: list[object] = []
        while not claimed and time.monotonic() < deadline:
            claimed = await a.claim_alerts("worker-c", limit=10, lease_seconds=0.3)
        assert len(claimed) == 1
        # worker-c's lease runs out (it died mid-attempt); worker-d takes the alert over and
        # worker-c's late outcome is ignored.
        taken: list[object] = []
        while not taken and time.monotonic() < deadline:
            taken = await b.claim_alerts("worker-d", limit=10, lease_seconds=30)
        assert not await a.settle_alert(recorded.id, "worker-c", delivered=True)
        assert await b.settle_alert(recorded.id, "worker-d", delivered=True)
        [alert] = await a.list_alerts()
        assert (alert.state, alert.attempts, alert.last_error) == ("delivered", 3, "HTTP 500")
        assert alert.delivered_at is not None
        assert await a.claim_alerts("worker-e", limit=10, lease_seconds=30) == []
    finally:
        await a.close()
        await b.close()


async def test_giving_up_marks_the_alert_failed(store_url: str) -> None:
    store = await _opened(store_url)
    try:
        recorded = await store.record_alert(NewAlert(key="k", kind="test", subject="s", summary="x"))
        assert recorded is not None
        [claim] = await store.claim_alerts("w", limit=1, lease_seconds=30)
        assert await store.settle_alert(claim.id, "w", delivered=False, error="refused")
        [alert] = await store.list_alerts(state="failed")
        assert (alert.attempts, alert.last_error) == (1, "refused")
        assert await store.claim_alerts("w", limit=1, lease_seconds=30) == []
        assert await store.list_alerts(state="pending") == []
        assert await store.list_alerts(kind="stuck") == []
    finally:
        await store.close()


@pytest.mark.parametrize("limit", [1, 3])
async def test_claims_take_the_oldest_first(store_url: str, limit: int) -> None:
    store = await _opened(store_url)
    try:
        for i in range(4):
            await store.record_alert(NewAlert(key=f"k{i}", kind="test", subject="s", summary=str(i)))
        claimed = await store.claim_alerts("w", limit=limit, lease_seconds=30)
        assert [a.summary for a in claimed] == [str(i) for i in range(limit)]
    finally:
        await store.close()


async def test_run_counts_and_queue_backlog(store_url: str) -> None:
    store = await _opened(store_url)
    try:
        now = time.time()
        for i in range(3):
            await store.create_run(NewRun(id=f"q{i}", workflow="hello", version="1", input={},
                                          queue="tenants", queue_key="acme"))
        await store.create_run(NewRun(id="plain", workflow="other", version="1", input={}))
        await store.create_run(NewRun(id="later", workflow="other", version="1", input={},
                                      wake_at=now + 3600))
        counts = {(w, s): c for w, s, c in await store.run_counts()}
        assert counts == {("hello", "queued"): 3, ("other", "queued"): 2}
        backlog = {q: (n, oldest) for q, n, oldest in await store.queue_backlog(time.time())}
        # The delayed run is not due: not in the backlog.
        assert set(backlog) == {"tenants", None}
        assert backlog["tenants"][0] == 3 and backlog[None][0] == 1
        oldest = backlog["tenants"][1]
        assert oldest is not None and now - 5 < oldest <= time.time()
    finally:
        await store.close()


async def test_a_claim_of_one_alert_leaves_the_others_due(store_url: str) -> None:
    store = await _opened(store_url)
    try:
        for i in range(3):
            await store.record_alert(NewAlert(key=f"k{i}", kind="test", subject="s", summary=str(i)))
        wanted = NewAlert(key="k2", kind="test", subject="s", summary="2").id
        [claimed] = await store.claim_alerts("cli", limit=5, lease_seconds=30, only=wanted)
        assert claimed.id == wanted
        rest = await store.claim_alerts("worker", limit=5, lease_seconds=30)
        assert sorted(a.summary for a in rest) == ["0", "1"]
    finally:
        await store.close()


async def test_prune_drops_settled_alerts_but_keeps_the_pending(store_url: str) -> None:
    store = await _opened(store_url)
    try:
        for key in ("sent", "gave-up", "waiting"):
            await store.record_alert(NewAlert(key=key, kind="test", subject="s", summary=key))
        for alert in await store.claim_alerts("w", limit=2, lease_seconds=30):
            await store.settle_alert(alert.id, "w", delivered=alert.summary == "sent")
        assert await store.prune(time.time() - 3600) == 0  # younger than the cutoff: kept
        assert len(await store.list_alerts()) == 3
        await store.prune(time.time() + 1)
        assert [a.summary for a in await store.list_alerts()] == ["waiting"]
    finally:
        await store.close()
