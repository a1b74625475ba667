"""The dashboard's server-rendered pages: what an operator reads, checked in the HTML.

The browser tests (tests/e2e/test_dashboard.py) click through the same pages; these check the
content of every page quickly and without a browser.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic_ai.messages import ModelMessage

import tether
from tests.integration.test_agent_loop import Profile, final, scripted
from tests.integration.test_server_api import build, waiting_run
from tether import Agent, tool
from tether.server import create_app
from tether.server.auth import Auth

pytestmark = pytest.mark.timeout(60)

LOCAL = Auth(local_user="tester")
"""Local mode: no principals in the store, every request acts as this OS user."""


@pytest.fixture
def app(sqlite_url: str) -> Iterator[tether.App]:
    app = build(sqlite_url)
    yield app
    app.close()


@pytest.fixture
def client(app: tether.App) -> Iterator[TestClient]:
    with TestClient(create_app(app, auth=LOCAL)) as client:
        yield client


def row_of(html: str, run_id: str) -> str:
    match = re.search(rf'<tr data-run="{run_id}">(.*?)</tr>', html, re.S)
    assert match, f"no row for run {run_id}"
    return match.group(1)


def test_runs_page_lists_runs_with_status_and_filters(app: tether.App, client: TestClient) -> None:
    waiting = waiting_run(app, labels={"team": "sales"})
    failed = app.run("boom").id
    html = client.get("/runs").text
    row = row_of(html, waiting)
    assert 'data-status="waiting"' in row and "approval" in row and "team=sales" in row
    assert "$0.0123" in row and "1,500" in row
    assert "malformed JSON" in row_of(html, failed)
    assert 'data-refresh="2"' in html  # the list keeps itself current

    only_failed = client.get("/runs", params={"status": "failed"}).text
    assert failed in only_failed and waiting not in only_failed
    only_boom = client.get("/runs", params={"workflow": "hello"}).text
    assert waiting in only_boom and failed not in only_boom
    sales = client.get("/runs", params={"label": "team=sales", "workflow": ""}).text
    assert waiting in sales and failed not in sales
    assert "status=failed&amp;label=team%3Dsales" in sales  # status pills keep the label filter
    empty = client.get("/runs", params={"status": "cancelled"}).text
    assert "No runs with status <b>cancelled</b>" in empty


def test_home_redirects_to_runs(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/runs"


def test_run_page_shows_header_journal_and_timeline(app: tether.App, client: TestClient) -> None:
    run_id = waiting_run(app, labels={"team": "sales", "tenant": "acme"})
    html = client.get(f"/runs/{run_id}").text
    assert "hello<span class=\"muted\">@2</span>" in html
    assert 'data-status="waiting"' in html
    assert '<code id="waiting-for">approval</code>' in html
    assert "team=sales" in html and "tenant=acme" in html
    assert "1,500" in html and "$0.0123" in html
    rows = re.findall(r'<tr data-seq="(\d+)" class="step-(\w+)">(.*?)</tr>', html, re.S)
    assert [(seq, status) for seq, status, _ in rows] == [
        ("1", "completed"), ("2", "completed"), ("3", "completed"), ("4", "waiting"),
    ]
    flaky = rows[1][2]
    assert '<td class="num warn">2</td>' in flaky  # the retried step stands out
    bars = re.findall(r'class="bar bar-(\w+) bar-(\w+)( open)?" style="left: ([\d.]+)%; width: ([\d.]+)%', html)
    assert len(bars) == 4
    assert bars[-1][0] == "signal" and bars[-1][2] == " open"  # the wait is still going
    lefts = [float(b[3]) for b in bars]
    assert lefts == sorted(lefts)  # steps sit in order on the time axis
    assert all(0 <= float(b[3]) + float(b[4]) <= 100.01 for b in bars)
    # The actions a waiting run allows, each posting JSON to the API.
    assert f'data-api="/api/runs/{run_id}/signal"' in html
    assert f'data-api="/api/runs/{run_id}/cancel"' in html
    assert 'name="name" required value="approval"' in html  # prefilled with what it waits for


def test_finished_run_page_has_no_signal_form_and_stops_refreshing(
    app: tether.App, client: TestClient
) -> None:
    failed = app.run("boom").id
    html = client.get(f"/runs/{failed}").text
    assert "ValueError</b>: the model returned malformed JSON" in html
    assert "/signal" not in html and "data-refresh" not in html
    assert f'data-api="/api/runs/{failed}/fork"' in html


def test_unknown_run_page_is_a_readable_404(client: TestClient) -> None:
    response = client.get("/runs/nope-42")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert "no run with id &#39;nope-42&#39;" in response.text
    assert client.get("/no/such/page").status_code == 404


def test_values_from_runs_are_escaped(app: tether.App, client: TestClient) -> None:
    run_id = waiting_run(app, who="<script>alert(1)</script>", labels={"team": "<b>x</b>"})
    for html in (client.get("/runs").text, client.get(f"/runs/{run_id}").text):
        assert "<script>alert(1)</script>" not in html and "<b>x</b>" not in html
        assert "&lt;b&gt;x&lt;/b&gt;" in html


def test_static_assets_are_served_locally(client: TestClient) -> None:
    html = client.get("/runs").text
    assert "http://" not in html.split("<body")[0] and "https://" not in html.split("<body")[0]
    assert client.get("/static/dashboard.js").status_code == 200
    assert "text/css" in client.get("/static/style.css").headers["content-type"]


def test_the_run_page_shows_the_trace_nested_with_a_model_call_as_a_conversation(
    store_url: str,
) -> None:
    @tool(risk="read")
    async def lookup(name: str) -> dict[str, Any]:
        """Find a company."""
        return {"name": name, "employees": 120}

    calls: list[list[ModelMessage]] = []
    model = scripted([("lookup", {"name": "Acme"}), final(name="Acme", employees=120)], calls)
    app = tether.App(store_url)
    app.register(Agent("researcher", model, "Research {company}.", tools=[lookup],
                       output_type=Profile))
    try:
        info = app.run("researcher", {"company": "Acme"})
        with TestClient(create_app(app, auth=Auth(local_user="tester"))) as client:
            html = client.get(f"/runs/{info.id}").text
        rows = re.findall(r'class="trace-row kind-(\w+)[^"]*" data-span="\w+" data-depth="(\d)"', html)
        assert rows == [("workflow", "0"), ("agent", "1"), ("chat", "2"), ("tool", "2"),
                        ("chat", "2")]
        assert 'data-role="system"' in html and "Research Acme." in html
        assert 'data-role="tool-call"' in html and 'data-role="tool-result"' in html
        assert 'id="fold-gaps"' in html and 'id="trace-zoom"' in html
        assert '<div class="arg-text">Acme</div>' in html  # the tool's argument, readable
    finally:
        app.close()
