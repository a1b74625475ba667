"""Deciding a run's pending tool-call review from code (the demo, tests, scripts).

The trust layer owns approvals (`App.approvals`, `App.approve`, `App.reject`, ``tether
approve``). This helper decides whatever review a run is waiting for through that API when the
App has it, and otherwise through the minimal gate's ``approval`` signal — one place to change
if the mechanism changes again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tether.errors import UserError


def decide_review(
    app: Any, run_id: str, *, approved: bool, reviewer: str, reason: str | None = None
) -> None:
    """Approve (or reject, with `reason`) the tool call run `run_id` is waiting on."""
    listing: Callable[[], Iterable[Any]] | None = getattr(app, "approvals", None)
    if callable(listing):
        requests = list(listing())
        pending: list[str] = [str(a.id) for a in requests if getattr(a, "run_id", None) == run_id]
        if not pending:
            raise UserError(
                f"run {run_id} has no pending approval request; check `tether approvals`")
        if approved:
            app.approve(pending[0], reviewer=reviewer)
        else:
            app.reject(pending[0], reviewer=reviewer, reason=reason or "rejected")
        return
    app.signal(run_id, "approval", {"approved": approved, "reviewer": reviewer,
                                    "reason": reason})
