"""Evidence: the trust report counts decisions correctly; promotion widens a category after
enough unedited approvals; a rejection or a failed automatic action narrows it back."""

from __future__ import annotations

from typing import Any

import tether
from tests.integration.trust_workflows import close_apps, make_app  # noqa: F401 - fixture
from tether.observe.names import TOOL_CALL_ID, TOOL_NAME
from tether.trust.gate import ToolCallRequest, authorize

INPUT = {"to": "ceo@acme.com", "body": "Hi from tether."}


def review_once(app: tether.App, *, decide: str, body: str = "Hi", **input: Any) -> tether.RunInfo:
    """Start a run, decide its one approval as told, run it to the end."""
    run = app.run("outreach", {**INPUT, "body": body, **input})
    assert run.status == "waiting", run.status
    (approval,) = app.approvals()
    if decide == "approve":
        app.approve(approval.id, reviewer="alice")
    elif decide == "edit":
        app.approve(approval.id, reviewer="alice", edits={"body": body + " (edited)"})
    else:
        app.reject(approval.id, reviewer="bob", reason="not this one")
    return app.run("outreach", run.input, run_id=run.id)


def test_the_report_counts_every_kind_of_decision(store_url: str) -> None:
    outbox: list[dict[str, Any]] = []
    policy = tether.Policy({"send": "review", "read": "auto"},
                           agents={"spammer": {"send": "deny"}})
    app = make_app(store_url, policy, outbox)
    for decide in ["approve", "approve", "approve", "edit", "reject"]:
        review_once(app, decide=decide)
    pending = app.run("outreach", INPUT)  # stays pending
    abandoned = app.run("outreach", INPUT)
    app.cancel(abandoned.id)  # its request is nobody's to decide any more: not counted
    app.run("outreach", {**INPUT, "agent": "spammer"})
    app.run("outreach", {**INPUT, "agent": "spammer"})

    rows = {(r.agent, r.category): r for r in app.trust_report()}
    assert set(rows) == {("drafter", "send"), ("spammer", "send")}
    s = rows["drafter", "send"].stats
    assert (s.reviews, s.approved, s.unedited, s.edited, s.rejected, s.pending) == (5, 4, 3, 1, 1, 1)
    assert s.approval_rate == 0.8
    assert s.edit_rate == 0.25
    assert rows["drafter", "send"].recommendation == (
        "keep review: 3/5 approved unedited (auto needs 20 reviews, 95% unedited)"
    )
    assert rows["spammer", "send"].stats.denied == 2
    assert rows["spammer", "send"].ring == "deny"
    assert len(outbox) == 4
    assert app.get_run(pending.id).status == "waiting"

    # A bare client App (what the CLI uses) reports the same counts from the store alone.
    client = tether.App(store_url)
    rows2 = {(r.agent, r.category): r for r in client.trust_report()}
    assert rows2["drafter", "send"].stats == s
    assert rows2["drafter", "send"].ring == "review"


def test_automatic_actions_and_their_later_failures_are_counted(store_url: str) -> None:
    outbox: list[dict[str, Any]] = []
    app = make_app(store_url, tether.Policy({"send": "auto"}), outbox)
    assert app.run("outreach", INPUT).status == "succeeded"
    assert app.run("outreach", INPUT).status == "succeeded"
    failed = app.run("outreach", {**INPUT, "body": "FAIL please"})
    assert failed.status == "failed"

    (row,) = app.trust_report()
    assert (row.stats.auto, row.stats.auto_failures) == (3, 1)
    assert row.recommendation == "narrow to review: 1/3 automatic actions failed later"


def test_evidence_promotes_a_category_and_a_failure_demotes_it(store_url: str) -> None:
    outbox: list[dict[str, Any]] = []
    policy = tether.Policy({"send": "review"},
                           promote=tether.Evidence(min_reviews=3, min_unedited_rate=1.0))
    app = make_app(store_url, policy, outbox)
    for n in range(3):
        review_once(app, decide="approve", body=f"mail {n}")
    (row,) = app.trust_report()
    assert row.ring == "review"
    assert row.recommendation == "eligible for auto: 3/3 approved unedited"

    # The next call finds the evidence sufficient: it runs without review, and the change is
    # recorded with its evidence.
    promoted = app.run("outreach", {**INPUT, "body": "mail 3"})
    assert promoted.status == "succeeded"
    assert app.approvals() == []
    (row,) = app.trust_report()
    assert row.ring == "auto"
    (change,) = row.changes
    assert (change.from_ring, change.to_ring) == ("review", "auto")
    assert change.reason == "promoted to auto: 3/3 approved unedited"
    assert change.evidence is not None and change.evidence["unedited"] == 3

    # An automatic send fails: the next call goes back to review.
    assert app.run("outreach", {**INPUT, "body": "FAIL"}).status == "failed"
    demoted = app.run("outreach", {**INPUT, "body": "after the failure"})
    assert demoted.status == "waiting"
    (row,) = app.trust_report()
    assert row.ring == "review"
    assert [c.to_ring for c in row.changes] == ["auto", "review"]
    assert "1/2 automatic action(s) failed" in row.changes[-1].reason
    # Evidence is counted afresh after a demotion.
    assert row.recommendation.startswith("keep review: 0/0")


def test_a_rejection_after_promotion_narrows_the_category(sqlite_url: str) -> None:
    policy = tether.Policy({"send": "review"},
                           promote=tether.Evidence(min_reviews=2, min_unedited_rate=0.9))
    app = make_app(sqlite_url, policy, [])
    review_once(app, decide="approve")
    review_once(app, decide="approve")
    assert app.run("outreach", INPUT).status == "succeeded"  # promoted: auto

    # Failing self-checks still send it to review even in the auto ring; the reviewer rejects.
    review_once(app, decide="reject", check_ok=False)
    assert app.run("outreach", INPUT).status == "waiting"
    (row,) = app.trust_report()
    assert [c.to_ring for c in row.changes] == ["auto", "review"]
    assert row.changes[-1].reason == "narrowed to review: 1 rejection(s) since promotion"


def test_promotion_is_per_agent(sqlite_url: str) -> None:
    policy = tether.Policy({"send": "review"},
                           promote=tether.Evidence(min_reviews=1, min_unedited_rate=1.0))
    app = make_app(sqlite_url, policy, [])
    review_once(app, decide="approve")
    assert app.run("outreach", INPUT).status == "succeeded"
    assert app.run("outreach", {**INPUT, "agent": "closer"}).status == "waiting"


def test_edits_keep_a_category_from_promotion(sqlite_url: str) -> None:
    policy = tether.Policy({"send": "review"},
                           promote=tether.Evidence(min_reviews=2, min_unedited_rate=0.9))
    app = make_app(sqlite_url, policy, [])
    review_once(app, decide="approve")
    review_once(app, decide="edit")
    assert app.run("outreach", INPUT).status == "waiting"
    (row,) = app.trust_report()
    assert row.changes == []


def test_a_failure_demotes_within_the_same_run(sqlite_url: str) -> None:
    policy = tether.Policy({"send": "review"},
                           promote=tether.Evidence(min_reviews=1, min_unedited_rate=1.0))
    app = make_app(sqlite_url, policy, [])
    review_once(app, decide="approve")

    def deliver(body: str) -> str:
        if body == "FAIL":
            raise RuntimeError("mailbox full")
        return "sent"

    @app.workflow
    async def two_sends(ctx: tether.Context) -> list[str]:
        results: list[str] = []
        for n, body in enumerate(["FAIL", "second"]):
            auth = await authorize(ctx, ToolCallRequest(
                agent="drafter", tool="send_email", risk="send", args={"body": body},
                args_schema={}, call_id=f"c{n}"))
            if auth.decision != "run":
                results.append(auth.decision)
                continue
            try:
                results.append(await ctx.run_step("send_email", deliver, (body,),
                                                  meta={TOOL_NAME: "send_email",
                                                        TOOL_CALL_ID: f"c{n}"}))
            except tether.StepFailed:
                results.append("failed")  # the agent sees the error and carries on
        return results

    # The first send runs automatically and fails; the second call of the same run is
    # already back under review.
    info = app.run("two_sends", {})
    assert info.status == "waiting"
    (row,) = app.trust_report()
    assert row.ring == "review"
    assert [c.to_ring for c in row.changes] == ["auto", "review"]
    assert "1/1 automatic action(s) failed" in row.changes[-1].reason
