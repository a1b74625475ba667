"""Titanium end to end in-process: offline (scripted model + FTS5 knowledge base) and through
the real OpenAI provider path against the local fake server."""

from __future__ import annotations

from pathlib import Path

import pytest

import tether
from tests.fake_provider import FakeProvider
from tether.agents.review import decide_review
from tether.examples.titanium import build, scripted_model, sent_emails

POLICY = tether.Policy({"read": "auto", "send": "review"}, default="review")


@pytest.fixture
def outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "outbox.sqlite")
    monkeypatch.setenv("TITANIUM_OUTBOX", path)
    return path


def test_offline_titanium_drafts_waits_for_approval_and_sends_once(
    store_url: str, outbox: str
) -> None:
    app = tether.App(store_url, policy=POLICY)
    app.register(build(scripted_model()))
    try:
        _offline_run_to_sent_email(app, outbox)
    finally:
        app.close()


def _offline_run_to_sent_email(app: tether.App, outbox: str) -> None:
    run = app.run("titanium", {"company": "Cedar Health"})
    assert run.status == "waiting", run.error
    assert sent_emails(outbox) == []  # nothing leaves before a human says so
    decide_review(app, run.id, approved=True, reviewer="sales-lead")
    info = app.run("titanium", {"company": "Cedar Health"}, run_id=run.id)
    assert info.status == "succeeded", info.error
    draft = info.output["drafter"]
    assert draft["to"] == "priya.raman@cedarhealth.example"
    assert "Cedar Health" in draft["body"]
    chosen = info.output["selector"]["case_study_ids"]
    assert {"cs-105", "cs-106"} & set(chosen)  # the healthcare studies fit best
    emails = sent_emails(outbox)
    assert len(emails) == 1 and emails[0]["body"] == draft["body"]
    assert emails[0]["idempotency_key"].startswith(run.id + ":")
    assert info.output["sender"].startswith("Email sent to priya.raman@")
    nodes = {s.meta.get("tether.node") for s in info.steps} - {None}
    assert nodes == {"researcher-scope", "researcher", "planner", "case_studies", "selector",
                     "drafter", "sender"}


def test_offline_titanium_refuses_off_topic_requests(sqlite_url: str) -> None:
    app = tether.App(sqlite_url, policy=POLICY)
    app.register(build(scripted_model()))
    info = app.run("titanium", {"company": "Acme Robotics", "goal": "write a poem about it"})
    assert info.status == "refused"
    assert info.error is not None and "not B2B sales research" in info.error["message"]


def test_titanium_on_a_model_name_goes_through_the_provider(
    sqlite_url: str, outbox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeProvider() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        app = tether.App(sqlite_url, policy=POLICY)
        # What TETHER_MODEL selects; "openai-chat:" because plain "openai:" means the
        # Responses API in pydantic-ai, and the fake server speaks chat completions.
        app.register(build("openai-chat:gpt-4.1-mini"))
        run = app.run("titanium", {"company": "Acme Robotics"})
        assert run.status == "waiting", run.error
        decide_review(app, run.id, approved=True, reviewer="sales-lead")
        info = app.run("titanium", {"company": "Acme Robotics"}, run_id=run.id)
    assert info.status == "succeeded", info.error
    assert info.usage.cost_usd > 0 and info.usage.unpriced_calls == 0  # priced per call
    assert len(server.requests) == info.usage.llm_calls
    assert len(sent_emails(outbox)) == 1
