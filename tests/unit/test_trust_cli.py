"""`tether approvals / approve / reject / trust` in-process against a real SQLite file."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import tether
from tests.integration.trust_workflows import close_apps, make_app  # noqa: F401 - fixture
from tether.cli import common
from tether.cli import runs as _runs  # noqa: F401 - registers the commands
from tether.cli import trust as _trust  # noqa: F401 - registers the commands
from tether.cli.common import cli
from tether.trust.gate import STARTED_BY_LABEL

INPUT = {"to": "ceo@acme.com", "body": "Hello from tether"}


@pytest.fixture
def outbox() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def app(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, outbox: list[dict[str, Any]]
) -> tether.App:
    monkeypatch.delenv("TETHER_STORE", raising=False)
    monkeypatch.delenv("TETHER_REVIEWER", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    # The CLI's console read $COLUMNS when it was made, if set then (pytest-xdist's workers have
    # COLUMNS=80): unset its width so it reads the 200 above.
    monkeypatch.setattr(common.console, "_width", None)
    app = make_app(sqlite_url, tether.Policy({"send": "review"}), outbox)
    return app


def invoke(app: tether.App, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--store", app.store.url])


def test_approvals_shows_each_request_with_its_context(app: tether.App) -> None:
    app.run("outreach", INPUT)
    (approval,) = app.approvals()

    result = invoke(app, "approvals")
    assert result.exit_code == 0, result.output
    for expected in (approval.id, "send_email", "ceo@acme.com", "Hello from tether", "History",
                     "Spend", "tether approve"):
        assert expected in result.output

    listed = json.loads(invoke(app, "approvals", "--json").output)
    assert [a["id"] for a in listed] == [approval.id]
    assert listed[0]["context"]["node"]["name"] == "drafter"
    assert invoke(app, "approvals", approval.id).exit_code == 0


def test_approve_with_edit_resumes_the_run_with_the_edited_arguments(
    app: tether.App, outbox: list[dict[str, Any]]
) -> None:
    run = app.run("outreach", INPUT)
    (approval,) = app.approvals()

    result = invoke(app, "approve", approval.id, "--as", "alice", "--edit", '{"body": "Edited"}')
    assert result.exit_code == 0, result.output
    assert "approved" in result.output and "edits to body" in result.output
    assert app.run("outreach", run.input, run_id=run.id).status == "succeeded"
    assert [m["body"] for m in outbox] == ["Edited"]
    assert "no pending approval requests" in invoke(app, "approvals").output


def test_invalid_edit_exits_2_and_keeps_the_request_pending(app: tether.App) -> None:
    app.run("outreach", INPUT)
    (approval,) = app.approvals()
    bad = invoke(app, "approve", approval.id, "--as", "alice", "--edit", '{"to": "nobody"}')
    assert bad.exit_code == 2
    assert "do not match its schema" in bad.output
    not_json = invoke(app, "approve", approval.id, "--as", "alice", "--edit", "{body:")
    assert not_json.exit_code == 2 and "not valid JSON" in not_json.output
    assert app.approvals()[0].status == "pending"


def test_self_approval_is_refused(app: tether.App, monkeypatch: pytest.MonkeyPatch) -> None:
    app.run("outreach", INPUT, labels={STARTED_BY_LABEL: "carol"})
    (approval,) = app.approvals()
    monkeypatch.setenv("TETHER_REVIEWER", "carol")
    result = invoke(app, "approve", approval.id)
    assert result.exit_code == 2
    assert "cannot decide its own request" in result.output


def test_reject_and_trust_report(app: tether.App) -> None:
    run = app.run("outreach", INPUT)
    (approval,) = app.approvals()
    assert invoke(app, "reject", approval.id, "--as", "bob").exit_code != 0  # reason required
    result = invoke(app, "reject", approval.id, "--as", "bob", "--reason", "Off-brand tone")
    assert result.exit_code == 0, result.output
    info = app.run("outreach", run.input, run_id=run.id)
    assert info.output["results"][0]["reason"] == "rejected by bob: Off-brand tone"

    table = invoke(app, "trust")
    assert table.exit_code == 0, table.output
    assert "drafter" in table.output and "keep review: 0/1 approved unedited" in table.output
    (row,) = json.loads(invoke(app, "trust", "--json").output)
    assert (row["agent"], row["category"], row["reviews"], row["rejected"]) == (
        "drafter", "send", 1, 1)


def test_unknown_request_is_a_clear_error(app: tether.App) -> None:
    app.list_runs()  # the store exists (a missing one is its own error: test_cli.py)
    result = invoke(app, "approve", "nope", "--as", "alice")
    assert result.exit_code == 2
    assert "no approval request 'nope'" in result.output


def test_tether_signal_refuses_an_approval_wait_and_the_run_keeps_waiting(app: tether.App) -> None:
    run = app.run("outreach", INPUT)
    (approval,) = app.approvals()
    result = CliRunner().invoke(cli, ["signal", run.id, f"approval:{approval.id}", "--data",
                                      '{"approved": true}', "--store", app.store.url])
    assert result.exit_code == 2, result.output
    assert f"tether approve {approval.id}" in result.output
    assert app.get_run(run.id).status == "waiting"
    assert [a.id for a in app.approvals()] == [approval.id]
