"""Approvals: the requests the trust layer sent to a human, with the context to judge them.

JSON under ``/api/approvals`` and the page ``/approvals``. Mounted only when the App has the
trust layer's client API (`available`); decisions go through ``app.approve_async`` /
``app.reject_async``, which validate the reviewer and any edits and wake the run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from tether.access.principals import Principal
from tether.errors import UserError
from tether.server.auth import note, principal_of, role
from tether.server.errors import ApiError
from tether.server.pages import REFRESH_SECONDS
from tether.server.rendering import render, tether_app_of

if TYPE_CHECKING:  # the trust layer is optional at run time (see `available`)
    from tether.trust.approvals import Approval

router = APIRouter(tags=["approvals"])

STATUSES = ("pending", "approved", "rejected", "expired")


def available(app: Any) -> bool:
    """Whether `app` has the trust layer's approvals API and its store keeps approvals."""
    return all(
        callable(getattr(app, name, None))
        for name in ("approvals_async", "get_approval_async", "approve_async", "reject_async")
    ) and callable(getattr(app.store, "list_trust_actions", None))


class Approve(BaseModel):
    """Body of ``POST /api/approvals/{id}/approve``. The reviewer is the authenticated
    principal, never a field of the body."""

    model_config = ConfigDict(extra="forbid")

    edits: dict[str, Any] | None = Field(
        default=None,
        description="Argument name → new value; validated against the tool's schema.",
    )


class Reject(BaseModel):
    """Body of ``POST /api/approvals/{id}/reject``."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, description="Goes back to the agent as the tool's result.")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def approval_json(approval: Approval) -> dict[str, Any]:
    """An approval request as the API returns it."""
    return {
        "id": approval.id,
        "run_id": approval.run_id,
        "seq": approval.seq,
        "workflow": approval.workflow,
        "node": approval.agent,
        "tool": approval.tool,
        "category": approval.category,
        "status": approval.status,
        "arguments": approval.args,
        "digest": approval.digest,
        "args_schema": approval.args_schema,
        "checks": [asdict(check) for check in approval.checks],
        "reason": approval.reason,
        "context": approval.context,
        "reviewers": approval.reviewers,
        "started_by": approval.started_by,
        "created_at": _iso(approval.created_at),
        "expires_at": _iso(approval.expires_at),
        "decided_by": approval.decided_by,
        "decided_at": _iso(approval.decided_at),
        "approved_arguments": approval.approved_args,
        "edited": approval.edited,
        "changes": {
            name: {"proposed": proposed, "approved": approved}
            for name, (proposed, approved) in approval.changes.items()
        },
    }


async def _get(request: Request, approval_id: str) -> Approval:
    try:
        return await tether_app_of(request).get_approval_async(approval_id)
    except UserError as exc:
        raise ApiError(404, str(exc), type="UnknownApproval") from exc


def _status_param(status: str | None) -> str | None:
    if status in (None, "", "all"):
        return None
    if status not in STATUSES:
        raise ApiError(
            422,
            f"unknown approval status {status!r}; use one of {', '.join(STATUSES)} or all",
            type="ValidationError",
            field="status",
        )
    return status


@router.get("/api/approvals")
async def list_approvals(
    request: Request,
    status: Annotated[str | None, Query(description="pending (default), approved, rejected, expired or all")] = "pending",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Approval requests, newest first."""
    found = await tether_app_of(request).approvals_async(status=_status_param(status), limit=limit)
    return {"approvals": [approval_json(a) for a in found]}


@router.get("/api/approvals/{approval_id}")
async def get_approval(request: Request, approval_id: str) -> dict[str, Any]:
    """One request with its arguments, checks and the reviewer's context snapshot."""
    return approval_json(await _get(request, approval_id))


def refusal(principal: Principal, approval: Approval) -> str | None:
    """Why `principal` may not decide `approval` (``None``: it may)."""
    if not principal.may_review(approval.category):
        if not principal.has("reviewer"):
            return f"{principal.name} is not a reviewer"
        allowed = ", ".join(sorted(principal.categories or ()))
        return (f"{principal.name} reviews {allowed} only, not {approval.category!r} "
                "requests")
    if approval.started_by is not None and approval.started_by == principal.name:
        return (f"{principal.name} started run {approval.run_id} and cannot decide its own "
                "request; another reviewer must")
    if approval.reviewers is not None and principal.name not in approval.reviewers:
        return (f"the policy lets only {', '.join(approval.reviewers) or 'nobody'} decide "
                f"{approval.category!r} requests")
    return None


async def _decide(
    request: Request, approval_id: str, decide: Callable[[str], Awaitable[Approval]]
) -> dict[str, Any]:
    principal = principal_of(request)
    approval = await _get(request, approval_id)  # an unknown id is a 404, not a refused decision
    note(request, category=approval.category, run=approval.run_id)
    why = refusal(principal, approval)
    if why is not None:
        raise ApiError(
            403, f"approval {approval_id}: {why}", type="Forbidden",
            extra={"role": "reviewer", "category": approval.category},
        )
    try:
        decided = await decide(principal.name)
    except UserError as exc:
        # The request stays pending: the edits do not validate, the run ended, or it was
        # already decided. The message says which.
        message = str(exc)
        field = "edits" if "edit" in message.lower() or "schema" in message.lower() else None
        status = 409 if "already" in message.lower() else 422
        raise ApiError(status, message, type="DecisionRefused", field=field) from exc
    return approval_json(decided)


@router.post("/api/approvals/{approval_id}/approve", **role("reviewer", "approval.approve"))
async def approve(request: Request, approval_id: str, body: Approve) -> dict[str, Any]:
    """Approve as the authenticated reviewer, optionally with edited arguments; the run resumes
    and the tool runs once with exactly the approved arguments."""
    app = tether_app_of(request)
    if body.edits:
        note(request, action="approval.edit", edits=sorted(body.edits))
    return await _decide(
        request,
        approval_id,
        lambda who: app.approve_async(approval_id, reviewer=who, edits=body.edits or None),
    )


@router.post("/api/approvals/{approval_id}/reject", **role("reviewer", "approval.reject"))
async def reject(request: Request, approval_id: str, body: Reject) -> dict[str, Any]:
    """Reject as the authenticated reviewer; the reason goes back to the agent as the tool's
    result."""
    app = tether_app_of(request)
    note(request, reason=body.reason)
    return await _decide(
        request,
        approval_id,
        lambda who: app.reject_async(approval_id, reviewer=who, reason=body.reason),
    )


@router.get("/approvals", response_class=HTMLResponse, include_in_schema=False)
async def approvals_page(
    request: Request, status: Annotated[str | None, Query()] = "pending"
) -> HTMLResponse:
    wanted = _status_param(status)
    found = await tether_app_of(request).approvals_async(status=wanted, limit=200)
    return await render(
        request,
        "approvals.html",
        {
            "approvals": found,
            "status": wanted,
            "statuses": STATUSES,
            "now": datetime.now(UTC),
            "refresh": REFRESH_SECONDS * 2,
        },
    )


@router.get("/approvals/{approval_id}", response_class=HTMLResponse, include_in_schema=False)
async def approval_page(request: Request, approval_id: str) -> HTMLResponse:
    approval = await _get(request, approval_id)
    return await render(
        request,
        "approval.html",
        {
            "a": approval,
            "now": datetime.now(UTC),
            "refresh": REFRESH_SECONDS * 2 if approval.status == "pending" else None,
        },
    )
