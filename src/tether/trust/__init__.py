"""Trust rings: risk categories, policies, approvals with context, and evidence.

* `tether.trust.policy` — `Policy` (category → ``auto`` / ``review`` / ``deny``) and `Evidence`.
* `tether.trust.gate` — `authorize`, the gate every tool call passes (journaled).
* `tether.trust.approvals` — `Approval` requests and decisions on them.
* `tether.trust.snapshot` — the context a reviewer gets with a request.
* `tether.trust.evidence` — counts, recommendations, promotion and demotion of rings.
* `tether.trust.render` — `render_approval` and `render_report` for terminals.
"""

from tether.trust.approvals import Approval
from tether.trust.evidence import CategoryStats, TrustReportRow
from tether.trust.gate import (
    STARTED_BY_LABEL,
    ActionRejected,
    ApprovalMismatch,
    Authorization,
    CheckResult,
    ToolCallRequest,
    authorize,
)
from tether.trust.policy import Evidence, Policy
from tether.trust.render import render_approval, render_report

__all__ = [
    "STARTED_BY_LABEL",
    "ActionRejected",
    "Approval",
    "ApprovalMismatch",
    "Authorization",
    "CategoryStats",
    "CheckResult",
    "Evidence",
    "Policy",
    "ToolCallRequest",
    "TrustReportRow",
    "authorize",
    "render_approval",
    "render_report",
]
