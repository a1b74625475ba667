"""The HTTP API of `tether serve` against real stores, through FastAPI's TestClient.

Runs are driven to the states under test with `app.run` (which executes a run in this process
until it finishes or suspends), so no worker thread is needed and nothing here sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

import tether
from tether.server import create_app
from tether.server.auth import Auth

pytestmark = pytest.mark.timeout(60)

LOCAL = Auth(local_user="tester")
"""Local mode: no principals in the store, every request acts as this OS user."""

JSON = {"Content-Type": "application/json"}


def build(store_url: str) -> tether.App:
    app = tether.App(store_url)
    flaky_calls: dict[str, int] = {}

    @app.step
    async def fetch(who: str) -> str:
        return f"page:{who}"

    @app.step(retry=tether.Retry(max_attempts=3, initial_delay=0.001, jitter=0))
    async def flaky(who: str) -> str:
        flaky_calls[who] = flaky_calls.get(who, 0) + 1
        if flaky_calls[who] == 1:
            raise ConnectionError("search backend reset the connection")
        return "ok"

    def priced_call() -> str:
        tether.current_step().add_usage(
            tether.Usage(llm_calls=1, input_tokens=1200, output_tokens=300, cost_usd=0.0123)
        )
        return "drafted"

    @app.workflow(name="hello", version="2")
    async def hello(ctx: tether.Context, who: str) -> dict[str, Any]:
        page = await fetch(who)
        await flaky(who)
        draft = await ctx.run_step("draft", priced_call)
        decision = await ctx.wait_for_signal("approval")
        return {"page": page, "draft": draft, "decision": decision}

    @app.workflow(name="boom")
    async def boom(ctx: tether.Context) -> None:
        raise ValueError("the model returned malformed JSON")

    return app


@pytest.fixture
def app(store_url: str) -> Iterator[tether.App]:
    app = build(store_url)
    yield app
    app.close()


@pytest.fixture
def client(app: tether.App) -> Iterator[TestClient]:
    with TestClient(create_app(app, auth=LOCAL), base_url="http://127.0.0.1:8000") as client:
        yield client


def waiting_run(app: tether.App, who: str = "acme", **kwargs: Any) -> str:
    info = app.run("hello", {"who": who}, **kwargs)
    assert info.status == "waiting"
    return info.id


def test_list_runs_newest_first_with_filters(app: tether.App, client: TestClient) -> None:
    first = waiting_run(app, "acme", labels={"team": "sales"})
    failed = app.run("boom").id
    queued = app.start("hello", {"who": "globex"}).id

    runs = client.get("/api/runs").json()["runs"]
    assert [r["id"] for r in runs] == [queued, failed, first]
    by_id = {r["id"]: r for r in runs}
    assert by_id[first]["status"] == "waiting" and by_id[first]["waiting_for"] == "approval"
    assert by_id[first]["labels"] == {"team": "sales"}
    assert by_id[first]["workflow"] == "hello" and by_id[first]["version"] == "2"
    assert by_id[first]["tokens"] == 1500 and by_id[first]["cost_usd"] == pytest.approx(0.0123)
    assert by_id[failed]["error"]["type"] == "ValueError"
    assert "malformed JSON" in by_id[failed]["error"]["message"]

    waiting = client.get("/api/runs", params={"status": "waiting"}).json()["runs"]
    assert [r["id"] for r in waiting] == [first]
    boom = client.get("/api/runs", params={"workflow": "boom"}).json()["runs"]
    assert [r["id"] for r in boom] == [failed]
    assert len(client.get("/api/runs", params={"limit": 2}).json()["runs"]) == 2
    sales = client.get("/api/runs", params={"label": "team=sales"}).json()["runs"]
    assert [r["id"] for r in sales] == [first]
    assert client.get("/api/runs", params={"label": ["team=sales", "tenant=x"]}).json()["runs"] == []
    bad = client.get("/api/runs", params={"label": "team"})
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "label"


def test_list_runs_rejects_an_unknown_status_naming_the_field(client: TestClient) -> None:
    response = client.get("/api/runs", params={"status": "stuck"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["fields"][0]["field"] == "status"
    assert "'stuck'" in error["message"] and "waiting" in error["message"]
    response = client.get("/api/runs", params={"limit": 0})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "limit"


def test_run_detail_has_the_journal_with_attempts_durations_and_usage(
    app: tether.App, client: TestClient
) -> None:
    run_id = waiting_run(app)
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["id"] == run_id and run["input"] == {"who": "acme"}
    journal = run["journal"]
    assert [(s["seq"], s["name"], s["status"]) for s in journal] == [
        (1, "fetch", "completed"),
        (2, "flaky", "completed"),
        (3, "draft", "completed"),
        (4, "approval", "waiting"),
    ]
    assert journal[0]["output"] == "page:acme"
    assert journal[1]["attempts"] == 2  # the first attempt's connection reset was retried
    assert all(s["duration"] is not None and s["duration"] >= 0 for s in journal[:3])
    assert journal[2]["usage"]["input_tokens"] == 1200
    assert journal[2]["usage"]["cost_usd"] == pytest.approx(0.0123)
    assert run["usage"]["llm_calls"] == 1


def test_unknown_run_is_a_404_that_names_it(client: TestClient) -> None:
    for response in (
        client.get("/api/runs/nope-123"),
        client.post("/api/runs/nope-123/signal", json={"name": "approval"}),
        client.post("/api/runs/nope-123/cancel", json={}),
        client.post("/api/runs/nope-123/fork", json={"from_step": 1}),
    ):
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["type"] == "UnknownRun" and "'nope-123'" in error["message"]


def test_start_queues_a_run_and_is_idempotent_with_a_run_id(
    app: tether.App, client: TestClient
) -> None:
    body = {"workflow": "hello", "input": {"who": "initech"}, "labels": {"tenant": "t1"}, "run_id": "r-1"}
    first = client.post("/api/runs", json=body)
    assert first.status_code == 201
    assert first.json()["id"] == "r-1" and first.json()["status"] == "queued"
    again = client.post("/api/runs", json=body)
    assert again.status_code == 200 and again.json()["id"] == "r-1"
    assert app.get_run("r-1").labels == {"tenant": "t1"}
    # The queued run is real: executing it gets as far as the signal wait.
    assert app.run("hello", run_id="r-1").status == "waiting"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input": {"who": "x"}}, "workflow"),
        ({"workflow": "hello", "input": ["not", "an", "object"]}, "input"),
        ({"workflow": "hello", "input": {}, "labels": {"team": 7}}, "labels.team"),
        ({"workflow": "hello", "input": {"who": "x"}, "colour": "red"}, "colour"),
        ({"workflow": "nosuch", "input": {}}, "workflow"),
        ({"workflow": "hello", "input": {"whom": "x"}}, "input"),
    ],
)
def test_start_with_bad_input_is_a_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/runs", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert field in [f["field"] for f in error["fields"]], error
    assert error["message"]


def test_a_body_that_is_not_json_is_a_422_saying_so(client: TestClient) -> None:
    response = client.post("/api/runs", content=b"{workflow: hello}",
                           headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["fields"] == [{"field": "body", "message": error["fields"][0]["message"]}]
    assert "the request body is not valid JSON (Expecting property name" in error["message"]
    assert app_runs(client) == []


def app_runs(client: TestClient) -> list[Any]:
    return client.get("/api/runs").json()["runs"]


def test_signal_resumes_a_waiting_run(app: tether.App, client: TestClient) -> None:
    run_id = waiting_run(app)
    response = client.post(f"/api/runs/{run_id}/signal", json={"name": "approval", "data": {"ok": True}})
    assert response.status_code == 202
    assert response.json()["status"] == "queued"  # runnable again, for any worker
    info = app.run("hello", run_id=run_id)
    assert info.status == "succeeded"
    assert info.output["decision"] == {"ok": True}
    detail = client.get(f"/api/runs/{run_id}").json()
    assert detail["status"] == "succeeded" and detail["output"]["decision"] == {"ok": True}


def test_signal_to_an_ended_run_is_a_conflict(app: tether.App, client: TestClient) -> None:
    failed = app.run("boom").id
    response = client.post(f"/api/runs/{failed}/signal", json={"name": "approval"})
    assert response.status_code == 409
    assert "already ended (failed)" in response.json()["error"]["message"]
    response = client.post(f"/api/runs/{failed}/signal", json={"data": 1})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "name"


def test_cancel_a_waiting_run(app: tether.App, client: TestClient) -> None:
    run_id = waiting_run(app)
    response = client.post(f"/api/runs/{run_id}/cancel", json={"reason": "customer withdrew"})
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert "customer withdrew" in response.json()["error"]["message"]
    assert app.get_run(run_id).status == "cancelled"


def test_fork_reuses_the_journal_before_the_step(app: tether.App, client: TestClient) -> None:
    run_id = waiting_run(app)
    response = client.post(f"/api/runs/{run_id}/fork", json={"from_step": 3})
    assert response.status_code == 201
    fork = response.json()
    assert fork["id"] != run_id and fork["parent_id"] == run_id
    assert [s["name"] for s in fork["journal"]] == ["fetch", "flaky"]
    for bad in (0, 9):
        response = client.post(f"/api/runs/{run_id}/fork", json={"from_step": bad})
        assert response.status_code == 422
        assert response.json()["error"]["fields"][0]["field"] == "from_step"


def test_posts_refuse_cross_site_requests(app: tether.App, client: TestClient) -> None:
    run_id = waiting_run(app)
    # An HTML form on another site can only send form encodings: refused before any change.
    form = client.post(
        f"/api/runs/{run_id}/cancel",
        content="reason=pwned",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 415
    assert "application/json" in form.json()["error"]["message"]
    evil = client.post(
        f"/api/runs/{run_id}/cancel", json={}, headers={"Origin": "https://evil.example"}
    )
    assert evil.status_code == 403
    assert "evil.example" in evil.json()["error"]["message"]
    assert app.get_run(run_id).status == "waiting"
    same = client.post(
        f"/api/runs/{run_id}/signal",
        json={"name": "approval"},
        headers={"Origin": "http://127.0.0.1:8000"},
    )
    assert same.status_code == 202


def test_health_and_openapi(client: TestClient) -> None:
    assert client.get("/api/health").json()["ok"] is True
    paths = client.get("/api/openapi.json").json()["paths"]
    assert {"/api/runs", "/api/runs/{run_id}", "/api/runs/{run_id}/signal"} <= set(paths)


def test_only_the_allowed_host_names_are_served(app: tether.App) -> None:
    # A DNS name rebound to 127.0.0.1 would make an attacker's page "same origin".
    api = create_app(app, allowed_hosts=["127.0.0.1", "localhost", "::1"], auth=LOCAL)
    with TestClient(api, base_url="http://127.0.0.1:8000") as client:
        assert client.get("/api/runs").status_code == 200
        assert client.get("/api/runs", headers={"Host": "[::1]:8000"}).status_code == 200
        rebound = client.get("/api/runs", headers={"Host": "rebind.attacker.example:8000"})
        assert rebound.status_code == 421
        assert "--allowed-host rebind.attacker.example" in rebound.json()["error"]["message"]


def test_failures_answer_in_the_same_json_shape(
    app: tether.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable(run_id: str) -> None:
        raise tether.StoreUnavailable("database at db:5432 refused the connection")

    async def broken(**kwargs: Any) -> None:
        raise RuntimeError("listing exploded")

    monkeypatch.setattr(app, "get_run_async", unreachable)
    monkeypatch.setattr(app, "list_runs_async", broken)
    with TestClient(create_app(app, auth=LOCAL), raise_server_exceptions=False) as client:
        down = client.get("/api/runs/r-1")
        assert down.status_code == 503
        assert down.json()["error"] == {
            "type": "StoreUnavailable", "message": "database at db:5432 refused the connection"
        }
        bug = client.get("/api/runs")
        assert bug.status_code == 500
        assert "RuntimeError: listing exploded" in bug.json()["error"]["message"]
        page = client.get("/runs")
        assert page.status_code == 500 and "listing exploded" in page.text


def test_no_page_loads_anything_from_another_host(client: TestClient) -> None:
    # FastAPI's interactive docs would pull scripts from a CDN; only the document is served.
    assert client.get("/api/docs").status_code == 404
    assert "cdn" not in client.get("/runs").text.lower()


def test_features_follow_what_the_store_can_do(app: tether.App, monkeypatch: pytest.MonkeyPatch) -> None:
    # A store without the trust and observe tables (e.g. an older backend) still serves runs.
    class RunsOnly:
        def __init__(self, store: Any) -> None:
            self._store = store

        def __getattr__(self, name: str) -> Any:
            if name in ("list_trust_actions", "load_window"):
                raise AttributeError(name)
            return getattr(self._store, name)

    monkeypatch.setattr(app, "store", RunsOnly(app.store))
    with TestClient(create_app(app, auth=LOCAL)) as client:
        assert client.get("/api/health").json()["features"] == {"approvals": False, "stats": False}
        assert client.get("/runs").status_code == 200
        assert client.get("/approvals").status_code == 404
        assert client.get("/api/cost").status_code == 404
