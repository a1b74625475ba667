"""``GET /metrics`` (Prometheus text) and ``GET /api/alerts`` (the recorded alerts).

Both read the store when asked, through the observe layer (`tether.observe.metrics`,
`tether.observe.alerts`). Both need the ``viewer`` role like every other read: a scraper
authenticates with a viewer token (``Authorization: Bearer tether_…``; Prometheus'
``authorization`` setting in its scrape config); a loopback server in local mode needs none.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from tether.server.rendering import tether_app_of

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Runs by status, queue backlog, step latency, model calls, tokens and spend (Prometheus
    text exposition format)."""
    from tether.observe.metrics import prometheus_text

    figures = request.app.state.metrics
    body, content_type = prometheus_text(figures, await figures.refresh())
    return Response(body, media_type=content_type)


@router.get("/api/alerts")
async def alerts(
    request: Request,
    kind: Annotated[str | None, Query(description="stuck, change, spend, unserved, test")] = None,
    state: Annotated[str | None, Query(description="pending, delivered, failed")] = None,
    since: Annotated[str | None, Query(description="Recorded within: 30m, 12h, 7d…")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Alerts recorded by workers, newest first, with their delivery state."""
    from tether.observe.alerts import alert_json, list_alerts
    from tether.observe.window import parse_duration

    # A bad kind, state or duration is a UserError: a 400 naming it.
    start = None if since is None else time.time() - parse_duration(since)
    found = await list_alerts(
        tether_app_of(request), kind=kind, state=state, since=start, limit=limit
    )
    return {"alerts": [alert_json(a) for a in found]}
