"""The audit trail over HTTP: ``GET /api/audit`` and the page ``/audit`` (viewer role)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from tether.access.audit import audit_json, list_audit
from tether.errors import UserError
from tether.server.errors import ApiError
from tether.server.rendering import render, tether_app_of

router = APIRouter()


async def _entries(
    request: Request, principal: str | None, action: str | None, target: str | None,
    since: str | None, limit: int,
) -> list[Any]:
    start = None
    if since:
        from tether.observe.window import parse_duration

        try:
            start = time.time() - parse_duration(since)
        except UserError as exc:
            raise ApiError(422, str(exc), type="ValidationError", field="since") from exc
    return await list_audit(
        tether_app_of(request).store, principal=principal or None, action=action or None,
        target=target or None, since=start, limit=limit,
    )


Filter = Annotated[str | None, Query(max_length=200)]


@router.get("/api/audit", tags=["audit"])
async def audit(
    request: Request,
    principal: Filter = None,
    action: Annotated[str | None, Query(max_length=200, description="run.cancel, or run.*")] = None,
    target: Filter = None,
    since: Annotated[str | None, Query(max_length=20, description="30m, 12h, 7d…")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Who did what, when, to which run or request, and how it ended; newest first."""
    found = await _entries(request, principal, action, target, since, limit)
    return {"entries": [audit_json(e) for e in found]}


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
async def audit_page(
    request: Request,
    principal: Filter = None,
    action: Filter = None,
    target: Filter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> HTMLResponse:
    found = await _entries(request, principal, action, target, None, limit)
    return await render(
        request,
        "audit.html",
        {
            "entries": found,
            "times": {e.id: datetime.fromtimestamp(e.at, UTC) for e in found},
            "principal": principal or "",
            "action": action or "",
            "target": target or "",
            "refresh": None,
        },
    )
