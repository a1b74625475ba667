"""Approvals over the HTTP API and on the dashboard pages, on the trust layer's real gate.

The run under review is the trust tests' stand-in email agent (tests/integration/
trust_workflows.py): its `send_email` call is in the `send` category, which the policy sends to
review.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

import tether
from tests.integration.trust_workflows import make_app
from tether.access.principals import create_principal
from tether.server import create_app
from tether.server.auth import Auth

pytestmark = pytest.mark.timeout(60)


INPUT = {"to": "ceo@acme.com", "body": "Hi, we cut freight costs 12% for Globex."}


@pytest.fixture
def outbox() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def app(store_url: str, outbox: list[dict[str, Any]]) -> Iterator[tether.App]:
    app = make_app(store_url, tether.Policy({"read": "auto", "send": "review"}), outbox)
    yield app
    app.close()


@pytest.fixture
def tokens(app: tether.App) -> dict[str, dict[str, str]]:
    """Bearer headers of reviewers alice and carol, and bob (operator and reviewer)."""
    made: dict[str, dict[str, str]] = {}
    for name, roles in (("alice", "reviewer"), ("carol", "reviewer"), ("bob", "operator,reviewer")):
        _, token = app.portal.run(create_principal(app.store, name, roles))
        made[name] = {"Authorization": f"Bearer {token}"}
    return made


@pytest.fixture
def client(app: tether.App, tokens: dict[str, dict[str, str]]) -> Iterator[TestClient]:
    """A client signed in as alice (a reviewer of every category)."""
    with TestClient(create_app(app, auth=Auth()), headers=tokens["alice"]) as client:
        yield client


def under_review(app: tether.App, **kwargs: Any) -> tuple[str, str]:
    """Run the agent until it waits for a human; return the run id and the request id."""
    info = app.run("outreach", INPUT, **kwargs)
    assert info.status == "waiting"
    pending = [a for a in app.approvals() if a.run_id == info.id]
    assert len(pending) == 1
    return info.id, pending[0].id


def resume(app: tether.App, run_id: str) -> tether.RunInfo:
    return app.run("outreach", run_id=run_id)


def test_pending_requests_carry_the_action_checks_and_context(
    app: tether.App, client: TestClient
) -> None:
    run_id, approval_id = under_review(app)
    listed = client.get("/api/approvals").json()["approvals"]
    assert [a["id"] for a in listed] == [approval_id]
    request = client.get(f"/api/approvals/{approval_id}").json()
    assert request["run_id"] == run_id and request["status"] == "pending"
    assert (request["node"], request["tool"], request["category"]) == ("drafter", "send_email", "send")
    assert request["arguments"] == {"to": "ceo@acme.com", "subject": "Hello", "body": INPUT["body"]}
    assert request["checks"] == [{"name": "no_placeholders", "passed": True, "reason": ""}]
    context = request["context"]
    assert [s["name"] for s in context["steps"]] == ["research"]
    assert context["totals"]["retries"] == 1
    assert context["spend"]["tokens"] == 1500
    assert context["versions"][0]["prompt_hash"] == "3fa2c0ffee"
    assert client.get("/api/approvals", params={"status": "approved"}).json()["approvals"] == []


def test_approve_with_edits_runs_the_tool_once_with_the_edited_arguments(
    app: tether.App, client: TestClient, outbox: list[dict[str, Any]],
    tokens: dict[str, dict[str, str]],
) -> None:
    run_id, approval_id = under_review(app)
    response = client.post(
        f"/api/approvals/{approval_id}/approve",
        json={"edits": {"subject": "Freight costs at Acme"}},
    )
    assert response.status_code == 200, response.text
    decided = response.json()
    assert decided["status"] == "approved" and decided["edited"] is True
    assert decided["decided_by"] == "alice"
    assert decided["approved_arguments"]["subject"] == "Freight costs at Acme"
    assert decided["changes"] == {"subject": {"proposed": "Hello", "approved": "Freight costs at Acme"}}
    audit = client.get(f"/approvals/{approval_id}").text  # the decided request shows the edit
    assert 'data-changed="subject"' in audit and "by alice" in audit
    assert app.get_run(run_id).status == "queued"  # the decision woke the run
    assert resume(app, run_id).status == "succeeded"
    assert [(m["subject"], m["body"]) for m in outbox] == [("Freight costs at Acme", INPUT["body"])]
    again = client.post(
        f"/api/approvals/{approval_id}/reject", json={"reason": "late"}, headers=tokens["carol"]
    )
    assert again.status_code == 409
    assert approval_id in again.json()["error"]["message"]


def test_edits_that_fail_the_tools_schema_are_refused_and_the_request_stays_pending(
    app: tether.App, client: TestClient
) -> None:
    _, approval_id = under_review(app)
    response = client.post(
        f"/api/approvals/{approval_id}/approve",
        json={"edits": {"to": "not an address"}},
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["fields"][0]["field"] == "edits"
    assert "to" in error["message"]
    assert client.get(f"/api/approvals/{approval_id}").json()["status"] == "pending"


def test_reject_sends_the_reason_back_to_the_agent(
    app: tether.App, client: TestClient, outbox: list[dict[str, Any]]
) -> None:
    run_id, approval_id = under_review(app)
    response = client.post(
        f"/api/approvals/{approval_id}/reject",
        json={"reason": "do not name other customers"},
    )
    assert response.status_code == 200 and response.json()["status"] == "rejected"
    info = resume(app, run_id)
    assert info.status == "succeeded" and outbox == []
    assert "do not name other customers" in str(info.output["results"][0]["reason"])


def test_the_runs_starter_cannot_approve_it(
    app: tether.App, client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    _, approval_id = under_review(app, started_by="bob")
    response = client.post(
        f"/api/approvals/{approval_id}/approve", json={}, headers=tokens["bob"]
    )
    assert response.status_code == 403
    assert "bob started run" in response.json()["error"]["message"]
    assert client.get(f"/api/approvals/{approval_id}").json()["status"] == "pending"


def test_a_reviewer_of_other_categories_cannot_decide(
    app: tether.App, client: TestClient, outbox: list[dict[str, Any]]
) -> None:
    _, token = app.portal.run(create_principal(app.store, "rolf", "reviewer", categories="refund"))
    rolf = {"Authorization": f"Bearer {token}"}
    run_id, approval_id = under_review(app)
    for action, body in (("approve", {}), ("reject", {"reason": "no"})):
        response = client.post(f"/api/approvals/{approval_id}/{action}", json=body, headers=rolf)
        assert response.status_code == 403, response.text
        assert "rolf reviews refund only, not 'send'" in response.json()["error"]["message"]
    assert client.get(f"/api/approvals/{approval_id}").json()["status"] == "pending"
    assert resume(app, run_id).status == "waiting" and outbox == []


def test_the_reviewer_is_never_a_field_of_the_body(app: tether.App, client: TestClient) -> None:
    _, approval_id = under_review(app)
    named = client.post(f"/api/approvals/{approval_id}/approve", json={"reviewer": "mallory"})
    assert named.status_code == 422
    assert named.json()["error"]["fields"][0]["field"] == "reviewer"
    assert client.post(f"/api/approvals/{approval_id}/approve", json={}).json()["decided_by"] == "alice"


def test_bad_decisions_name_what_is_wrong(app: tether.App, client: TestClient) -> None:
    _, approval_id = under_review(app)
    no_reason = client.post(f"/api/approvals/{approval_id}/reject", json={})
    assert no_reason.json()["error"]["fields"][0]["field"] == "reason"
    unknown = client.post("/api/approvals/nope/approve", json={})
    assert unknown.status_code == 404 and "'nope'" in unknown.json()["error"]["message"]
    status = client.get("/api/approvals", params={"status": "maybe"})
    assert status.status_code == 422 and status.json()["error"]["fields"][0]["field"] == "status"


def test_approval_pages_show_the_request_with_its_context(
    app: tether.App, client: TestClient
) -> None:
    run_id, approval_id = under_review(app)
    listing = client.get("/approvals").text
    assert f'data-approval="{approval_id}"' in listing
    assert "send_email" in listing and "risk: send" in listing
    assert "ceo@acme.com" in listing and "no_placeholders" in listing
    assert f'data-api="/api/approvals/{approval_id}/approve"' in listing
    assert 'class="count has-pending" title="pending approval requests">1</span>' in listing
    detail = client.get(f"/approvals/{approval_id}").text
    assert "journal at request time" in detail and "research" in detail
    assert "1,500 tokens" in detail and "gpt-4.1-mini-2025-04-14" in detail
    run_page = client.get(f"/runs/{run_id}").text
    assert f'href="/approvals/{approval_id}"' in run_page
    assert 'href="/approvals"' in run_page  # the nav has the approvals page
    assert client.get("/approvals/nope").status_code == 404


def test_an_approval_wait_is_not_offered_or_accepted_as_a_plain_signal(
    app: tether.App, tokens: dict[str, dict[str, str]], outbox: list[dict[str, Any]]
) -> None:
    run_id, approval_id = under_review(app)
    with TestClient(create_app(app, auth=Auth()), headers=tokens["bob"]) as operator:
        page = operator.get(f"/runs/{run_id}").text
        assert f'data-api="/api/runs/{run_id}/signal"' not in page
        assert f'id="decide-link" href="/approvals/{approval_id}"' in page

        sent = operator.post(
            f"/api/runs/{run_id}/signal",
            json={"name": f"approval:{approval_id}", "data": {"approved": True}},
        )
        assert sent.status_code == 400, sent.text
        assert f"tether approve {approval_id}" in sent.json()["error"]["message"]
        assert operator.get(f"/api/runs/{run_id}").json()["status"] == "waiting"

        decided = operator.post(f"/api/approvals/{approval_id}/approve", json={})
        assert decided.status_code == 200, decided.text
    assert resume(app, run_id).status == "succeeded"
    assert len(outbox) == 1


def test_an_email_reads_as_an_email_and_an_edit_as_a_diff(
    app: tether.App, client: TestClient
) -> None:
    letter = "Hi Ann,\n\nWe cut freight costs 12% for Globex.\n\nBest,\nBo"
    info = app.run("outreach", {**INPUT, "body": letter})
    (approval,) = [a for a in app.approvals() if a.run_id == info.id]
    page = client.get(f"/approvals/{approval.id}").text
    # The body is shown as text with its line breaks (escaped for HTML, never as JSON "\n").
    assert '<div class="email-body" data-arg="body">Hi Ann,\n\nWe cut freight costs 12% for Globex.' in page
    assert "<dt>To</dt>" in page and "ceo@acme.com" in page and "<dt>Subject</dt>" in page
    assert 'id="hotkeys"' in page and 'aria-keyshortcuts="a"' in page

    edited = letter.replace("12%", "15%")
    response = client.post(f"/api/approvals/{approval.id}/approve", json={"edits": {"body": edited}})
    assert response.status_code == 200, response.text
    page = client.get(f"/approvals/{approval.id}").text
    assert 'data-changed="body"' in page
    assert '<span class="diff-del">- We cut freight costs 12% for Globex.</span>' in page
    assert '<span class="diff-add">+ We cut freight costs 15% for Globex.</span>' in page
    assert '<span class="diff-same">  Hi Ann,</span>' in page
