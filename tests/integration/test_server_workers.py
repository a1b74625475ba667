"""The workers page and ``GET /api/workers``: live workers from the registry with the runs
their leases hold, and running runs whose worker is gone."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

import tether
from tether.server import create_app
from tether.server.auth import Auth
from tether.store.base import WorkerRecord

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def app(store_url: str) -> Iterator[tether.App]:
    app = tether.App(store_url)

    @app.workflow(name="enrich", version="3")
    async def enrich(ctx: tether.Context) -> None:
        return None

    yield app
    app.close()


def worker(owner: str) -> WorkerRecord:
    now = time.time()
    return WorkerRecord(owner=owner, name=owner.split(":")[0], host="box-1", pid=4242,
                        started_at=now, last_seen=now, lease_seconds=30.0,
                        workflows=(("enrich", "3"),))


def test_workers_show_the_runs_their_leases_hold(app: tether.App) -> None:
    run = app.portal.run
    run(app.store.register_worker(worker("w-alpha:1a2b")))
    run(app.store.register_worker(worker("w-beta:3c4d")))
    held = app.start("enrich", {}, run_id="held-by-alpha").id
    orphan = app.start("enrich", {}, run_id="held-by-ghost").id
    app.start("enrich", {}, run_id="still-queued")
    assert run(app.store.claim_run(held, "w-alpha:1a2b", lease_seconds=60)) is not None
    assert run(app.store.claim_run(orphan, "w-ghost:9999", lease_seconds=60)) is not None

    with TestClient(create_app(app, auth=Auth(local_user="tester"))) as client:
        body = client.get("/api/workers").json()
        by_owner = {w["owner"]: w for w in body["workers"]}
        assert set(by_owner) == {"w-alpha:1a2b", "w-beta:3c4d"}
        assert [r["id"] for r in by_owner["w-alpha:1a2b"]["held_runs"]] == [held]
        assert by_owner["w-beta:3c4d"]["held_runs"] == []
        assert by_owner["w-alpha:1a2b"]["workflows"] == [{"workflow": "enrich", "version": "3"}]
        assert by_owner["w-alpha:1a2b"]["late"] is False
        assert [r["id"] for r in body["orphaned_runs"]] == [orphan]

        page = client.get("/workers").text
        assert 'data-worker="w-alpha:1a2b"' in page and 'data-held="held-by-alpha"' in page
        assert 'data-orphan="held-by-ghost"' in page and "enrich@3" in page
        assert "still-queued" not in page
        assert 'href="/workers"' in client.get("/runs").text  # in the navigation


def test_no_workers_says_how_to_start_one(app: tether.App) -> None:
    with TestClient(create_app(app, auth=Auth(local_user="tester"))) as client:
        assert client.get("/api/workers").json() == {"workers": [], "orphaned_runs": []}
        assert "tether worker" in client.get("/workers").text
