"""Finding runs on the API and the runs page: search by id or label, time range, and cursor
pages that neither skip nor repeat a run when new runs arrive between pages."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

import tether
from tether.server import create_app
from tether.server.auth import Auth

pytestmark = pytest.mark.timeout(60)


def build(store_url: str) -> tether.App:
    app = tether.App(store_url)

    @app.workflow(name="enrich")
    async def enrich(ctx: tether.Context, n: int) -> int:
        return n

    @app.workflow(name="outreach")
    async def outreach(ctx: tether.Context, n: int) -> int:
        return n

    return app


@pytest.fixture
def app(store_url: str) -> Iterator[tether.App]:
    app = build(store_url)
    yield app
    app.close()


@pytest.fixture
def client(app: tether.App) -> Iterator[TestClient]:
    with TestClient(create_app(app, auth=Auth(local_user="tester"))) as client:
        yield client


def ids(client: TestClient, **params: Any) -> list[str]:
    response = client.get("/api/runs", params=params)
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["runs"]]


def all_pages(client: TestClient, **params: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        body = client.get("/api/runs", params={**params, **({"cursor": cursor} if cursor else {})}).json()
        pages.append([r["id"] for r in body["runs"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_search_by_id_or_label_and_filter_by_workflow(app: tether.App, client: TestClient) -> None:
    for n in range(3):
        app.start("enrich", {"n": n}, run_id=f"acme-enrich-{n}", labels={"tenant": "acme"})
    app.start("outreach", {"n": 9}, run_id="globex-outreach-9", labels={"tenant": "globex"})

    assert ids(client, q="enrich-1") == ["acme-enrich-1"]
    assert ids(client, q="tenant=globex") == ["globex-outreach-9"]
    assert ids(client, q="acme", workflow="enrich") == ["acme-enrich-2", "acme-enrich-1", "acme-enrich-0"]
    assert ids(client, q="acme", workflow="outreach") == []
    page = client.get("/runs", params={"q": "enrich-1"}).text
    assert 'data-run="acme-enrich-1"' in page and 'data-run="acme-enrich-0"' not in page
    assert 'value="enrich-1"' in page  # the search box keeps what was searched


def test_time_range_keeps_runs_created_inside_it(app: tether.App, client: TestClient) -> None:
    app.start("enrich", {"n": 1}, run_id="today")
    now = datetime.now(UTC)
    tomorrow = (now + timedelta(days=1)).isoformat()
    yesterday = (now - timedelta(days=1)).isoformat()
    assert ids(client, since=yesterday) == ["today"]
    assert ids(client, since=tomorrow) == []
    assert ids(client, until=yesterday) == []
    assert ids(client, range="1h") == ["today"]
    bad = client.get("/api/runs", params={"since": "last tuesday"})
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "since"
    bad = client.get("/api/runs", params={"range": "3w"})
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "range"


def test_cursor_pages_cover_every_run_once_even_when_new_runs_arrive(
    app: tether.App, client: TestClient
) -> None:
    made = [app.start("enrich", {"n": n}, run_id=f"run-{n:02d}").id for n in range(7)]
    first = client.get("/api/runs", params={"limit": 3}).json()
    assert [r["id"] for r in first["runs"]] == ["run-06", "run-05", "run-04"]
    app.start("enrich", {"n": 99}, run_id="run-99")  # arrives between pages
    second = client.get("/api/runs", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert [r["id"] for r in second["runs"]] == ["run-03", "run-02", "run-01"]
    third = client.get("/api/runs", params={"limit": 3, "cursor": second["next_cursor"]}).json()
    assert [r["id"] for r in third["runs"]] == ["run-00"] and third["next_cursor"] is None
    assert sorted(r for page in all_pages(client, limit=2) for r in page) == sorted([*made, "run-99"])
    bad = client.get("/api/runs", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "cursor"


def test_runs_created_in_the_same_instant_are_paged_by_id(sqlite_url: str) -> None:
    app = build(sqlite_url)
    try:
        for n in range(5):
            app.start("enrich", {"n": n}, run_id=f"tie-{n}")
        with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as db:
            db.execute("UPDATE runs SET created_at = 1700000000.5")
        with TestClient(create_app(app, auth=Auth(local_user="tester"))) as client:
            pages = all_pages(client, limit=2)
            assert pages == [["tie-4", "tie-3"], ["tie-2", "tie-1"], ["tie-0"]]
            # The page links carry the cursor and the filters.
            html = client.get("/runs", params={"limit": 2, "workflow": "enrich"}).text
            assert 'id="page-next"' in html and "workflow=enrich" in html
    finally:
        app.close()
