"""Approval requests end to end in one process: suspend, context, approve/edit/reject, expiry,
who may decide, and the digest that binds a decision to its arguments."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Any

import pytest

import tether
from tests.integration.trust_workflows import close_apps, make_app  # noqa: F401 - fixture
from tether.store.base import StepRecord
from tether.trust.digest import args_digest
from tether.trust.gate import STARTED_BY_LABEL, approval_signal

INPUT = {"to": "ceo@acme.com", "body": "Hi, we cut freight costs 12% for Globex."}


def resume(app: tether.App, run_id: str) -> tether.RunInfo:
    """Execute a woken run here (what any worker would do)."""
    return app.run("outreach", app.get_run(run_id).input, run_id=run_id)


def forge(app: tether.App, run_id: str, name: str, payload: Any) -> None:
    """Put a signal in the run's mailbox behind the App's back (what a forger with store
    access could do); the gate must still refuse to act on it."""
    assert app.portal.run(app.store.send_signal(run_id, name, payload)) is not None


def pending_one(app: tether.App) -> tether.Approval:
    pending = app.approvals()
    assert len(pending) == 1, pending
    return pending[0]


def test_review_suspends_the_run_without_calling_the_tool(store_url: str) -> None:
    outbox: list[dict[str, Any]] = []
    app = make_app(store_url, tether.Policy({"read": "auto", "send": "review"}), outbox)

    info = app.run("outreach", INPUT)

    assert info.status == "waiting"
    assert outbox == []
    approval = pending_one(app)
    assert approval.run_id == info.id
    assert info.waiting_for == f"approval:{approval.id}"
    assert (approval.agent, approval.tool, approval.category) == ("drafter", "send_email", "send")
    assert approval.args == {"to": "ceo@acme.com", "subject": "Hello", "body": INPUT["body"]}
    assert approval.digest.startswith("sha256:")
    assert [c.name for c in approval.checks] == ["no_placeholders"]
    assert approval.checks[0].passed


def test_approval_carries_the_reviewers_context(store_url: str) -> None:
    outbox: list[dict[str, Any]] = []
    app = make_app(store_url, tether.Policy({"send": "review"}), outbox)
    # Two earlier runs of the node, approved, give the usual p95 and the category's history.
    for n in range(2):
        run = app.run("outreach", {**INPUT, "body": f"draft {n}"})
        app.approve(pending_one(app).id, reviewer="alice",
                    edits={"body": "edited"} if n == 0 else None)
        assert resume(app, run.id).status == "succeeded"

    app.run("outreach", INPUT, budget=tether.Budget(max_cost_usd=0.5, max_tokens=100_000))
    context = pending_one(app).context

    names = [s["name"] for s in context["steps"]]
    assert names == ["research"]  # the journal before the gate
    assert context["totals"]["steps"] == 1
    assert context["node"]["name"] == "drafter"
    assert context["node"]["samples"] == 2
    assert context["node"]["usual_p95"] is not None
    assert context["node"]["elapsed"] is not None
    assert context["spend"]["tokens"] == 1500
    assert context["spend"]["cost_usd"] == pytest.approx(0.0042)
    assert context["spend"]["budget"]["max_cost_usd"] == 0.5
    assert context["versions"] == [{
        "node": "drafter", "request_model": "gpt-4.1-mini",
        "response_model": "gpt-4.1-mini-2025-04-14", "prompt_hash": "3fa2c0ffee",
    }]
    history = context["history"]
    assert (history["reviews"], history["approved"], history["edited"]) == (2, 2, 1)
    assert history["approval_rate"] == 1.0
    assert history["edit_rate"] == 0.5
    assert [d["by"] for d in history["last"]] == ["alice", "alice"]
    assert "review" in context["reason"]

    text = tether.render_approval(pending_one(app))
    for expected in ("send_email", "ceo@acme.com", "usual p95", "1,500 of 100,000 tokens", "of $0.50",
                     "gpt-4.1-mini-2025-04-14", "2 reviews", "tether approve"):
        assert expected in text, (expected, text)


def test_snapshot_shows_retries_and_errors_of_earlier_steps(sqlite_url: str) -> None:
    app = make_app(sqlite_url, tether.Policy({"send": "review"}), [])
    app.run("outreach", INPUT)
    context = pending_one(app).context
    research = context["steps"][0]
    # The research step failed once with a timeout before succeeding.
    assert research["attempts"] == 2
    assert context["totals"]["retries"] == 1


def test_approval_with_edits_runs_the_tool_once_with_the_edited_arguments(store_url: str) -> None:
    outbox: list[dict[str, Any]] = []
    app = make_app(store_url, tether.Policy({"send": "review"}), outbox)
    run = app.run("outreach", INPUT)
    approval = pending_one(app)

    decided = app.approve(approval.id, reviewer="alice", edits={"body": "Shorter, kinder text."})

    assert decided.status == "approved" and decided.edited
    assert decided.approved_args == {**approval.args, "body": "Shorter, kinder text."}
    assert decided.changes == {"body": (INPUT["body"], "Shorter, kinder text.")}
    audit = tether.render_approval(decided)  # who, when, what changed
    assert "Decision: approved by alice" in audit and "→ Shorter, kinder text." in audit
    assert app.get_run(run.id).status == "queued"  # the decision woke the run
    info = resume(app, run.id)
    assert info.status == "succeeded"
    assert [m["body"] for m in outbox] == ["Shorter, kinder text."]
    assert info.output["results"][0]["reviewer"] == "alice"
    assert app.approvals() == []
    # A second approval of the same request is refused and changes nothing.
    with pytest.raises(tether.UserError, match="already approved by alice"):
        app.approve(approval.id, reviewer="bob")
    assert len(outbox) == 1


def test_invalid_edits_are_refused_and_the_request_stays_pending(store_url: str) -> None:
    outbox: list[dict[str, Any]] = []
    app = make_app(store_url, tether.Policy({"send": "review"}), outbox)
    run = app.run("outreach", INPUT)
    approval = pending_one(app)

    with pytest.raises(tether.UserError, match=r"do not match its schema \(to: .*does not match"):
        app.approve(approval.id, reviewer="alice", edits={"to": "not an address"})
    with pytest.raises(tether.UserError, match="has no argument"):
        app.approve(approval.id, reviewer="alice", edits={"cc": "x@y.z"})
    with pytest.raises(tether.UserError, match="body"):
        app.approve(approval.id, reviewer="alice", edits={"body": "x" * 501})

    assert pending_one(app).status == "pending"
    assert app.get_run(run.id).status == "waiting"
    app.approve(approval.id, reviewer="alice", edits={"to": "cfo@acme.com"})
    assert resume(app, run.id).status == "succeeded"
    assert [m["to"] for m in outbox] == ["cfo@acme.com"]


def test_the_runs_starter_cannot_approve_and_reviewers_can_be_restricted(store_url: str) -> None:
    policy = tether.Policy({"send": "review"}, reviewers={"send": ["alice", "bob"]})
    app = make_app(store_url, policy, [])
    run = app.run("outreach", INPUT, labels={STARTED_BY_LABEL: "bob"})
    approval = pending_one(app)
    assert approval.started_by == "bob"
    assert approval.reviewers == ["alice", "bob"]

    with pytest.raises(tether.UserError, match=r"bob started run .* cannot decide its own"):
        app.approve(approval.id, reviewer="bob")
    with pytest.raises(tether.UserError, match="mallory may not decide 'send'"):
        app.approve(approval.id, reviewer="mallory")
    with pytest.raises(tether.UserError, match="name the reviewer"):
        app.reject(approval.id, reviewer=" ", reason="no")
    assert pending_one(app).status == "pending"

    decided = app.approve(approval.id, reviewer="alice")
    assert (decided.decided_by, decided.edited) == ("alice", False)
    assert decided.decided_at is not None
    assert resume(app, run.id).status == "succeeded"


def test_a_rejection_reaches_the_agent_which_revises(store_url: str) -> None:
    outbox: list[dict[str, Any]] = []
    app = make_app(store_url, tether.Policy({"send": "review"}), outbox)
    run = app.run("outreach", {**INPUT, "drafts": 2})

    with pytest.raises(tether.UserError, match="needs a reason"):
        app.reject(pending_one(app).id, reviewer="alice", reason="")
    app.reject(pending_one(app).id, reviewer="alice", reason="Do not mention Globex.")
    assert outbox == []
    second = resume(app, run.id)
    assert second.status == "waiting"  # the revised draft is under review again
    revised = pending_one(app)
    assert revised.args["body"].endswith(" v2")
    app.approve(revised.id, reviewer="alice")

    info = resume(app, run.id)
    assert info.status == "succeeded"
    first, last = info.output["results"]
    assert first == {"decision": "reject",
                     "reason": "rejected by alice: Do not mention Globex."}
    assert last["decision"] == "run"
    assert [m["body"] for m in outbox] == [revised.args["body"]]
    rejected = app.approvals(status="rejected")
    assert [(a.decided_by, a.reason) for a in rejected] == [("alice", "Do not mention Globex.")]


def test_policy_can_end_the_run_on_rejection(sqlite_url: str) -> None:
    app = make_app(sqlite_url, tether.Policy({"send": "review"}, on_reject="fail"), [])
    run = app.run("outreach", {**INPUT, "drafts": 2})
    app.reject(pending_one(app).id, reviewer="alice", reason="wrong company")
    info = resume(app, run.id)
    assert info.status == "failed"
    assert info.error is not None and info.error["type"] == "ActionRejected"
    assert "wrong company" in info.error["message"]


def test_rejections_are_bounded(sqlite_url: str) -> None:
    app = make_app(sqlite_url, tether.Policy({"send": "review"}, max_rejections=1), [])
    run = app.run("outreach", {**INPUT, "drafts": 3})
    app.reject(pending_one(app).id, reviewer="alice", reason="no")
    assert resume(app, run.id).status == "waiting"
    app.reject(pending_one(app).id, reviewer="alice", reason="still no")
    info = resume(app, run.id)
    assert info.status == "failed"
    assert "max_rejections=1" in (info.error or {}).get("message", "")


def test_deny_refuses_the_call_tells_the_agent_and_is_recorded(store_url: str) -> None:
    outbox: list[dict[str, Any]] = []
    policy = tether.Policy({"send": "review"}, agents={"drafter": {"send": "deny"}})
    app = make_app(store_url, policy, outbox)
    info = app.run("outreach", INPUT)
    assert info.status == "succeeded"
    assert outbox == []
    (result,) = info.output["results"]
    assert result["decision"] == "deny"
    assert "denies 'send' actions to agent 'drafter'" in result["reason"]
    (row,) = app.trust_report()
    assert (row.agent, row.category, row.ring, row.stats.denied) == ("drafter", "send", "deny", 1)
    # Another agent is not covered by drafter's override.
    other = app.run("outreach", {**INPUT, "agent": "closer"})
    assert other.status == "waiting"


def test_auto_runs_only_when_every_check_passed(store_url: str) -> None:
    outbox: list[dict[str, Any]] = []
    app = make_app(store_url, tether.Policy({"send": "auto"}), outbox)
    assert app.run("outreach", INPUT).status == "succeeded"
    assert len(outbox) == 1
    run = app.run("outreach", {**INPUT, "check_ok": False})
    assert run.status == "waiting"
    approval = pending_one(app)
    assert "no_placeholders: body still has [NAME]" in (approval.reason or "")
    assert not approval.checks[0].passed


def test_a_request_expires_with_the_configured_outcome(sqlite_url: str) -> None:
    app = make_app(sqlite_url, tether.Policy({"send": "review"}, expire_after=0.3), [])
    run = app.run("outreach", INPUT)
    approval = pending_one(app)
    assert approval.expires_at is not None
    assert app.get_run(run.id).wake_at is not None
    deadline = time.monotonic() + 5
    while time.time() < approval.expires_at.timestamp() and time.monotonic() < deadline:
        time.sleep(0.02)
    info = resume(app, run.id)
    assert info.status == "succeeded"
    (result,) = info.output["results"]
    assert result["decision"] == "reject"
    assert "expired" in result["reason"]
    assert app.approvals(status="expired")[0].id == approval.id
    with pytest.raises(tether.UserError, match="already expired"):
        app.approve(approval.id, reviewer="alice")


def test_expiry_can_fail_the_run(sqlite_url: str) -> None:
    policy = tether.Policy({"send": "review"}, expire_after=0.2, on_expire="fail")
    app = make_app(sqlite_url, policy, [])
    run = app.run("outreach", INPUT)
    expires = pending_one(app).expires_at
    assert expires is not None
    while time.time() < expires.timestamp():
        time.sleep(0.02)
    info = resume(app, run.id)
    assert info.status == "failed"
    assert "expired" in (info.error or {}).get("message", "")


def test_a_decision_that_does_not_match_its_digest_never_runs_the_tool(sqlite_url: str) -> None:
    outbox: list[dict[str, Any]] = []
    app = make_app(sqlite_url, tether.Policy({"send": "review"}), outbox)
    run = app.run("outreach", INPUT)
    approval = pending_one(app)
    # A forged decision written straight into the mailbox (App.signal refuses the name):
    # right request id, arguments that are not the approved ones' digest.
    forge(app, run.id, approval_signal(approval.id), {
        "approval_id": approval.id, "status": "approved", "edited": True,
        "args": {**approval.args, "to": "attacker@evil.com"}, "digest": approval.digest,
    })
    info = resume(app, run.id)
    assert info.status == "failed"
    assert info.error is not None and info.error["type"] == "ApprovalMismatch"
    assert outbox == []


def test_an_unedited_approval_runs_only_the_arguments_that_were_proposed(sqlite_url: str) -> None:
    outbox: list[dict[str, Any]] = []
    app = make_app(sqlite_url, tether.Policy({"send": "review"}), outbox)
    run = app.run("outreach", INPUT)
    approval = pending_one(app)
    # A forged decision that is consistent in itself (its arguments match its digest) but is
    # not marked as an edit: it must be for exactly the arguments the agent proposed.
    other = {**approval.args, "to": "attacker@evil.com"}
    forge(app, run.id, approval_signal(approval.id), {
        "approval_id": approval.id, "status": "approved", "edited": False,
        "args": other, "digest": args_digest(other),
    })
    info = resume(app, run.id)
    assert info.status == "failed"
    assert info.error is not None and info.error["type"] == "ApprovalMismatch"
    # No decision was recorded for it, which is now caught first; the proposed-arguments rule
    # stays behind it for a recorded decision.
    assert "does not match the decision recorded" in info.error["message"]
    assert outbox == []


def tamper(sqlite_url: str, run_id: str, approval_id: str, *, args: dict[str, Any],
           digest: str, decision_too: bool) -> None:
    """Rewrite a genuine decision's signal in the mailbox (and, `decision_too`, the decision
    recorded for the request) to other arguments: a store-level attacker after the review."""
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as db:
        (raw,) = db.execute("SELECT payload FROM signals WHERE run_id = ? AND name = ?",
                            (run_id, approval_signal(approval_id))).fetchone()
        db.execute("UPDATE signals SET payload = ? WHERE run_id = ? AND name = ?",
                   (json.dumps({**json.loads(raw), "args": args, "digest": digest}), run_id,
                    approval_signal(approval_id)))
        if decision_too:
            db.execute("UPDATE trust_actions SET final_args = ?, final_digest = ? WHERE id = ?",
                       (json.dumps(args), digest, approval_id))


def test_a_genuine_decision_rewritten_to_other_arguments_never_runs_them(
    sqlite_url: str,
) -> None:
    # The recorded decision matches (same reviewer, status, digest); only the arguments the
    # run is handed changed: the digest check behind the store check refuses them.
    outbox: list[dict[str, Any]] = []
    app = make_app(sqlite_url, tether.Policy({"send": "review"}), outbox)
    run = app.run("outreach", INPUT)
    approval = pending_one(app)
    app.approve(approval.id, reviewer="alice")
    tamper(sqlite_url, run.id, approval.id, args={**approval.args, "to": "attacker@evil.com"},
           digest=approval.digest, decision_too=False)
    info = resume(app, run.id)
    assert info.status == "failed" and outbox == []
    assert info.error is not None and "do not match the digest" in info.error["message"]


def test_a_recorded_unedited_approval_rewritten_to_other_arguments_is_refused(
    sqlite_url: str,
) -> None:
    # Decision and signal both rewritten, consistently (args and their digest), not as an edit:
    # an unedited approval must be for exactly the arguments the agent proposed.
    outbox: list[dict[str, Any]] = []
    app = make_app(sqlite_url, tether.Policy({"send": "review"}), outbox)
    run = app.run("outreach", INPUT)
    approval = pending_one(app)
    app.approve(approval.id, reviewer="alice")
    other = {**approval.args, "to": "attacker@evil.com"}
    tamper(sqlite_url, run.id, approval.id, args=other, digest=args_digest(other),
           decision_too=True)
    info = resume(app, run.id)
    assert info.status == "failed" and outbox == []
    assert info.error is not None and "other arguments than the ones proposed" in info.error["message"]


@pytest.mark.parametrize("payload", [None, {"approved": True}, "yes"])
def test_a_plain_signal_named_like_an_approval_is_refused_and_the_run_keeps_waiting(
    store_url: str, payload: Any
) -> None:
    outbox: list[dict[str, Any]] = []
    app = make_app(store_url, tether.Policy({"send": "review"}), outbox)
    run = app.run("outreach", INPUT)
    approval = pending_one(app)

    with pytest.raises(tether.UserError, match=f"tether approve {approval.id}"):
        app.signal(run.id, approval_signal(approval.id), payload)

    assert app.portal.run(app.store.list_signals(run.id)) == []
    assert app.get_run(run.id).status == "waiting"
    assert pending_one(app).id == approval.id
    # The real decision still goes through and the run finishes.
    app.approve(approval.id, reviewer="alice")
    assert resume(app, run.id).status == "succeeded"
    assert len(outbox) == 1


def test_a_workflow_signal_that_only_looks_like_an_approval_is_delivered(sqlite_url: str) -> None:
    app = tether.App(sqlite_url)

    @app.workflow()
    async def waits(ctx: tether.Context) -> Any:
        return await ctx.wait_for_signal("approval:budget-2027")

    try:
        run = app.run("waits", {})
        app.signal(run.id, "approval:budget-2027", {"ok": True})
        assert app.run("waits", {}, run_id=run.id).output == {"ok": True}
    finally:
        app.close()


def test_a_tampered_gate_record_fails_the_run_before_any_decision_is_used(
    sqlite_url: str,
) -> None:
    outbox: list[dict[str, Any]] = []
    app = make_app(sqlite_url, tether.Policy({"send": "review"}), outbox)
    run = app.run("outreach", INPUT)
    approval = pending_one(app)
    # The journaled gate step now claims the request was made for other arguments than the
    # ones the workflow proposes on replay; a genuine approval of the proposed ones follows.
    other = {**approval.args, "to": "attacker@evil.com"}
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as db:
        (raw,) = db.execute("SELECT output FROM steps WHERE run_id = ? AND name = 'trust.gate'",
                            (run.id,)).fetchone()
        gated = json.loads(raw)
        assert gated["digest"] == approval.digest
        db.execute("UPDATE steps SET output = ? WHERE run_id = ? AND name = 'trust.gate'",
                   (json.dumps({**gated, "digest": args_digest(other)}), run.id))
    app.approve(approval.id, reviewer="alice")
    info = resume(app, run.id)
    assert info.status == "failed"
    assert info.error is not None and info.error["type"] == "ApprovalMismatch"
    assert "differ from the ones the approval request was made for" in info.error["message"]
    assert outbox == []


def test_a_finished_run_cannot_be_approved(sqlite_url: str) -> None:
    app = make_app(sqlite_url, tether.Policy({"send": "review"}), [])
    run = app.run("outreach", INPUT)
    approval = pending_one(app)
    app.cancel(run.id)
    assert app.approvals() == []  # nobody is asked to decide for a cancelled run
    with pytest.raises(tether.UserError, match="already ended \\(cancelled\\)"):
        app.approve(approval.id, reviewer="alice")


async def test_async_twins(sqlite_url: str) -> None:
    outbox: list[dict[str, Any]] = []
    app = make_app(sqlite_url, tether.Policy({"send": "review"}), outbox)
    info = await app.run_async("outreach", INPUT)
    (approval,) = await app.approvals_async()
    assert (await app.get_approval_async(approval.id)).id == approval.id
    await app.approve_async(approval.id, reviewer="alice", edits={"subject": "Hi"})
    assert (await app.run_async("outreach", info.input, run_id=info.id)).status == "succeeded"
    assert outbox[0]["subject"] == "Hi"
    rows = await app.trust_report_async()
    assert rows[0].stats.edited == 1


def test_a_gate_step_rerun_after_a_crash_reuses_its_request(sqlite_url: str) -> None:
    app = make_app(sqlite_url, tether.Policy({"send": "review"}), [], lease_seconds=0.3)
    real_write = app.store.write_step
    crashed: list[int] = []

    async def crash_once(run_id: str, token: int, step: StepRecord, **kwargs: Any) -> bool:
        # The request is stored, then the store fails before the gate step is journaled.
        if step.name == "trust.gate" and not crashed:
            crashed.append(step.seq)
            raise tether.StoreUnavailable("database went away")
        return await real_write(run_id, token, step, **kwargs)

    app.store.write_step = crash_once  # type: ignore[method-assign]
    run = app.run("outreach", INPUT)
    assert crashed and run.status == "running"  # dropped, left for takeover
    first = pending_one(app)
    expires = app.get_run(run.id).lease_expires
    assert expires is not None
    while time.time() <= expires.timestamp():  # the dead holder's lease runs out
        time.sleep(0.02)

    info = resume(app, run.id)
    assert info.status == "waiting"
    assert info.recoveries == 1
    again = pending_one(app)  # still exactly one request, the same one
    assert (again.id, again.created_at, again.digest) == (first.id, first.created_at, first.digest)
    assert info.waiting_for == f"approval:{first.id}"


def test_two_reviewers_deciding_at_once_make_one_decision(store_url: str) -> None:
    outbox: list[dict[str, Any]] = []
    app = make_app(store_url, tether.Policy({"send": "review"}), outbox)
    run = app.run("outreach", INPUT)
    approval = pending_one(app)
    # Two reviewers, each with their own client App, decide in the same instant.
    clients = [tether.App(store_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def decide(client: tether.App, who: str) -> None:
        barrier.wait()
        try:
            if who == "alice":
                client.approve(approval.id, reviewer=who, edits={"body": "alice's text"})
            else:
                client.reject(approval.id, reviewer=who, reason="bob says no")
            outcomes.append(who)
        except tether.UserError as exc:
            outcomes.append(f"refused: {exc}")

    threads = [threading.Thread(target=decide, args=(c, w))
               for c, w in zip(clients, ["alice", "bob"], strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for client in clients:
        client.close()

    winners = [o for o in outcomes if not o.startswith("refused")]
    assert len(winners) == 1, outcomes
    assert any("decided meanwhile" in o or "already" in o for o in outcomes), outcomes
    sent = app.portal.run(app.store.list_signals(run.id))
    assert len(sent) == 1  # one decision reached the run
    info = resume(app, run.id)
    assert info.status == "succeeded"
    decided = app.get_approval(approval.id)
    assert decided.decided_by == winners[0]
    if winners[0] == "alice":
        assert [m["body"] for m in outbox] == ["alice's text"]
    else:
        assert outbox == [] and "bob says no" in info.output["results"][0]["reason"]


def test_a_policy_that_is_not_a_policy_fails_the_run_clearly(sqlite_url: str) -> None:
    outbox: list[dict[str, Any]] = []
    app = make_app(sqlite_url, None, outbox)
    app.policy = {"send": "review"}  # a plain dict is not a Policy
    info = app.run("outreach", INPUT)
    assert info.status == "failed"
    assert "not a tether.Policy" in (info.error or {}).get("message", "")
    assert outbox == []


def test_a_decision_cannot_be_sent_before_the_run_asks_for_it(store_url: str) -> None:
    # The request id is predictable (`<run id>-<seq>`): a plain signal of that name sent while
    # the run is still queued used to wait in the mailbox, and the gate took it as the decision
    # — an operator approved (and rewrote) a send that no reviewer ever saw.
    outbox: list[dict[str, Any]] = []
    app = make_app(store_url, tether.Policy({"send": "review"}), outbox)
    run = app.start("outreach", INPUT)
    args = {**INPUT, "subject": "Hello", "to": "attacker@evil.com"}
    forged = {"approval_id": f"{run.id}-2", "status": "approved", "edited": True,
              "args": args, "digest": args_digest(args), "reviewer": "alice"}
    with pytest.raises(tether.UserError, match="only a recorded decision"):
        app.signal(run.id, approval_signal(f"{run.id}-2"), forged)
    assert app.portal.run(app.store.list_signals(run.id)) == []
    assert resume(app, run.id).status == "waiting"
    assert pending_one(app).id == f"{run.id}-2"
    assert outbox == []


def test_a_forged_decision_behind_the_apps_back_is_not_acted_on(store_url: str) -> None:
    # The mailbox is not the authority: a self-consistent "approval" (its own args, their
    # digest, edited) put in the store directly before the run asks is checked against the
    # decision recorded for the request — there is none — and nothing is sent.
    outbox: list[dict[str, Any]] = []
    app = make_app(store_url, tether.Policy({"send": "review"}), outbox)
    run = app.start("outreach", INPUT)
    args = {**INPUT, "subject": "Hello", "to": "attacker@evil.com"}
    forge(app, run.id, approval_signal(f"{run.id}-2"),
          {"approval_id": f"{run.id}-2", "status": "approved", "edited": True, "args": args,
           "digest": args_digest(args), "reviewer": "alice"})
    info = resume(app, run.id)
    assert outbox == []
    assert info.status == "failed"
    assert info.error is not None and "does not match the decision recorded" in info.error["message"]


def test_a_fork_that_kept_the_request_but_not_the_decision_asks_again(store_url: str) -> None:
    # Forked from the approval wait, the fork kept the source's request — already decided, and
    # another run's: it waited forever and no reviewer could answer it (409). It asks again.
    outbox: list[dict[str, Any]] = []
    app = make_app(store_url, tether.Policy({"send": "review"}), outbox)
    source = app.run("outreach", INPUT)
    app.approve(pending_one(app).id, reviewer="rita")
    assert resume(app, source.id).status == "succeeded" and len(outbox) == 1

    wait_seq = next(s.seq for s in app.get_run(source.id).steps if s.kind == "signal")
    fork = app.fork(source.id, from_step=wait_seq)
    info = resume(app, fork.id)
    assert info.status == "waiting" and len(outbox) == 1
    again = pending_one(app)
    assert again.run_id == fork.id and again.id == f"{fork.id}-{wait_seq}"
    assert again.args == {"to": INPUT["to"], "subject": "Hello", "body": INPUT["body"]}
    assert info.waiting_for == f"approval:{again.id}"

    app.approve(again.id, reviewer="rob")
    info = resume(app, fork.id)
    assert info.status == "succeeded"
    assert info.output["results"][0]["reviewer"] == "rob"
    assert len(outbox) == 2 and outbox[1]["key"].startswith(f"{fork.id}:")
    assert [s.name for s in info.steps].count("trust.ask_again") == 1


def test_a_fork_of_a_run_still_waiting_for_review_gets_its_own_request(store_url: str) -> None:
    outbox: list[dict[str, Any]] = []
    app = make_app(store_url, tether.Policy({"send": "review"}), outbox)
    source = app.run("outreach", INPUT)
    first = pending_one(app)
    fork = app.fork(source.id)  # keeps every completed step: the gate, not a decision
    assert resume(app, fork.id).status == "waiting"
    requests = {a.run_id: a for a in app.approvals()}
    assert set(requests) == {source.id, fork.id} and requests[source.id].id == first.id
    app.reject(requests[fork.id].id, reviewer="rita", reason="not this one")
    app.approve(first.id, reviewer="rita")
    assert resume(app, source.id).status == "succeeded"
    forked = resume(app, fork.id)
    assert forked.status == "succeeded" and forked.output["results"][0]["decision"] == "reject"
    assert len(outbox) == 1 and outbox[0]["key"].startswith(f"{source.id}:")
