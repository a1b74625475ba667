"""The audit trail: every mutation made through the API, the dashboard or the CLI, with who
made it, when, to what, and how it ended (``ok``, ``denied``, ``failed``).

Entries are append-only; `tether prune` drops those older than its cutoff along with old runs.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from tether.store.base import AuditRecord, Store

AUDIT_ACTIONS = (
    "run.start", "run.signal", "run.cancel", "run.fork", "run.budget",
    "approval.approve", "approval.edit", "approval.reject",
    "policy.change", "token.create", "token.revoke",
)
"""The actions tether records (routes added later record under their own names)."""

OUTCOMES = ("ok", "denied", "failed")


async def record(
    store: Store,
    principal: str,
    action: str,
    target: str | None,
    *,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
    via: str = "api",
) -> AuditRecord:
    """Append one entry to the audit trail."""
    return await store.add_audit(
        AuditRecord(
            at=time.time(), principal=principal, action=action, target=target,
            outcome=outcome, detail=detail or None, via=via,
        )
    )


async def list_audit(
    store: Store,
    *,
    principal: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: float | None = None,
    limit: int = 100,
) -> list[AuditRecord]:
    """Entries newest first; `action` may end in ``*`` (``run.*``)."""
    return await store.list_audit(
        principal=principal, action=action, target=target, since=since, limit=limit
    )


def audit_json(entry: AuditRecord) -> dict[str, Any]:
    """An entry as the API and ``tether audit --json`` print it."""
    return {
        "id": entry.id,
        "at": datetime.fromtimestamp(entry.at, UTC).isoformat(),
        "principal": entry.principal,
        "action": entry.action,
        "target": entry.target,
        "outcome": entry.outcome,
        "detail": entry.detail,
        "via": entry.via,
    }
