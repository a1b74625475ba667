"""Policy rings and overrides, the argument digest, and the arithmetic of evidence."""

from __future__ import annotations

from datetime import timedelta

import pytest

import tether
from tether.store.base import TrustActionRecord
from tether.trust.digest import args_digest
from tether.trust.evidence import category_stats, eligible, recommendation


def test_rings_per_category_with_agent_overrides_and_default() -> None:
    policy = tether.Policy({"read": "auto", "send": "review"}, default="deny",
                           agents={"drafter": {"send": "deny", "read": "review"}})
    assert policy.ring("read") == "auto"
    assert policy.ring("send") == "review"
    assert policy.ring("delete") == "deny"
    assert policy.ring("send", agent="drafter") == "deny"
    assert policy.ring("read", agent="drafter") == "review"
    assert policy.ring("send", agent="closer") == "review"
    assert policy.ring("delete", agent="drafter") == "deny"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rules": {"send": "maybe"}}, "category 'send' maps to 'maybe'"),
        ({"default": "yes"}, "'<default>' maps to 'yes'"),
        ({"agents": {"a": {"send": "never"}}}, "agent 'a', category 'send'"),
        ({"on_expire": "approve"}, "on_expire='approve'"),
        ({"on_reject": "ignore"}, "on_reject='ignore'"),
        ({"max_rejections": 0}, "max_rejections=0"),
        ({"expire_after": timedelta(0)}, "must be positive"),
        ({"expire_after": {"send": -5}}, "'send' expires after -5"),
        ({"reviewers": {"send": "alice"}}, "list of reviewer names"),
    ],
)
def test_bad_policies_are_refused_with_what_to_change(kwargs: dict, message: str) -> None:
    with pytest.raises(tether.UserError, match=message):
        tether.Policy(**kwargs)


def test_evidence_thresholds_are_validated() -> None:
    with pytest.raises(tether.UserError, match="min_reviews"):
        tether.Evidence(min_reviews=0)
    with pytest.raises(tether.UserError, match="min_unedited_rate"):
        tether.Evidence(min_unedited_rate=1.5)


def test_expiry_accepts_seconds_or_timedelta() -> None:
    assert tether.Policy(expire_after=timedelta(hours=2)).expire_seconds("send") == 7200
    assert tether.Policy(expire_after=30).expire_seconds("send") == 30
    assert tether.Policy().expire_seconds("send") is None
    per_category = tether.Policy(expire_after={"send": timedelta(hours=4), "pay": 600})
    assert per_category.expire_seconds("send") == 14400
    assert per_category.expire_seconds("pay") == 600
    assert per_category.expire_seconds("read") is None


def test_reviewers_restrict_only_their_categories() -> None:
    policy = tether.Policy(reviewers={"send": ["alice"]})
    assert policy.reviewers_for("send") == ["alice"]
    assert policy.reviewers_for("read") is None


def test_digest_is_canonical_and_sensitive_to_every_value() -> None:
    a = args_digest({"to": "x@y.z", "body": "Hé"})
    assert a == args_digest({"body": "Hé", "to": "x@y.z"})  # key order does not matter
    assert a != args_digest({"to": "x@y.z", "body": "He"})
    assert a != args_digest({"to": "x@y.z", "body": "Hé", "cc": None})
    assert a.startswith("sha256:") and len(a) == 7 + 64


def action(status: str, *, edited: bool = False, outcome: str | None = None,
           n: int = 0) -> TrustActionRecord:
    return TrustActionRecord(
        id=f"r-{n}", run_id="r", seq=n, workflow="w", agent="drafter", tool="send_email",
        category="send", ring="review", status=status, args={}, digest="d", created_at=float(n),
        decided_at=float(n) if status in ("approved", "rejected", "expired") else None,
        decided_by="alice", edited=edited, outcome=outcome, reason="why",
    )


def test_category_stats_count_each_kind_of_decision() -> None:
    actions = [action("approved", n=1), action("approved", n=2), action("approved", edited=True, n=3),
               action("rejected", n=4), action("expired", n=5), action("pending", n=6),
               action("denied", n=7), action("auto", outcome="ok", n=8),
               action("auto", outcome="failed", n=9), action("auto", n=10)]
    s = category_stats("drafter", "send", actions)
    assert (s.reviews, s.approved, s.unedited, s.edited, s.rejected, s.expired) == (5, 3, 2, 1, 1, 1)
    assert (s.pending, s.denied, s.auto, s.auto_failures) == (1, 1, 3, 1)
    assert s.approval_rate == pytest.approx(0.6)
    assert s.edit_rate == pytest.approx(1 / 3)
    assert [d["id"] for d in s.last] == ["r-5", "r-4", "r-3", "r-2", "r-1"]  # newest first
    assert s.last[0]["reason"] == "why" and s.last[2]["reason"] is None


def test_recommendations_say_what_to_do_and_why() -> None:
    evidence = tether.Evidence(min_reviews=50, min_unedited_rate=0.95)
    good = category_stats("a", "send", [action("approved", n=i) for i in range(48)]
                          + [action("approved", edited=True, n=98), action("rejected", n=99)])
    assert eligible(good, evidence)
    assert recommendation("review", good, evidence) == "eligible for auto: 48/50 approved unedited"
    few = category_stats("a", "send", [action("approved", n=1)])
    assert not eligible(few, evidence)
    assert recommendation("review", few, evidence).startswith("keep review: 1/1")
    failing = category_stats("a", "send", [action("auto", outcome="failed"), action("auto", n=1)])
    assert recommendation("auto", failing, evidence) == (
        "narrow to review: 1/2 automatic actions failed later"
    )
    assert recommendation("deny", category_stats("a", "send", [action("denied")]),
                          evidence).startswith("denied by policy (1 call")
