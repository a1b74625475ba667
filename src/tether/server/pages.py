"""Dashboard pages for runs: the list (filtered by status and workflow) and one run's detail.

Pages are rendered on the server; ``static/dashboard.js`` refreshes their live regions and
turns the action forms into JSON calls to the API, so every change goes through one path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

import tether.server.runquery as runquery
from tether.engine.context import APPROVAL_SIGNAL_PREFIX
from tether.engine.records import RunInfo, cut_calls
from tether.errors import UnknownRun
from tether.server.rendering import render, tether_app_of
from tether.server.stats import node_rows, verdicts
from tether.server.trace import build_trace
from tether.server.views import money, timeline
from tether.store.base import FINISHED_STATUSES, RUN_STATUSES, Store

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 100
"""Runs per page of the runs list."""
REFRESH_SECONDS = 2
"""How often the live parts of a page are refreshed (runs change state within seconds)."""


@router.get("/runs", response_class=HTMLResponse)
async def runs_page(
    request: Request,
    status: Annotated[str | None, Query()] = None,
    workflow: Annotated[str | None, Query()] = None,
    label: Annotated[list[str] | None, Query()] = None,
    q: Annotated[str | None, Query()] = None,
    since: Annotated[str | None, Query()] = None,
    until: Annotated[str | None, Query()] = None,
    within: Annotated[str | None, Query(alias="range")] = None,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = PAGE_SIZE,
) -> HTMLResponse:
    query = runquery.build(
        status=status, workflow=workflow, label=label, q=q, since=since, until=until,
        within=within, cursor=cursor, limit=limit,
    )
    app = tether_app_of(request)
    runs, next_cursor = await runquery.find(request, query)
    workflows = sorted(set(app.workflow_names()) | {run.workflow for run in runs})
    health = dict(zip([run.id for run in runs], await verdicts(request, runs), strict=True))
    label = [pair for pair in label or [] if pair]
    filters = {
        "workflow": query.workflow, "label": label, "q": (q or "").strip() or None,
        "since": since or None, "until": until or None, "range": within or None,
        "limit": str(limit) if limit != PAGE_SIZE else None,
    }
    return await render(
        request,
        "runs.html",
        {
            "runs": runs,
            "health": health,
            "statuses": RUN_STATUSES,
            "status": query.status,
            "workflow": query.workflow,
            "label": label,
            "q": filters["q"] or "",
            "since": since or "",
            "until": until or "",
            "within": within or "",
            "ranges": list(runquery.RANGES),
            "filter_query": _query(**filters),
            "next_query": _query(status=query.status, **filters, cursor=next_cursor)[1:]
            if next_cursor else None,
            "first_query": _query(status=query.status, **filters)[1:] if cursor else None,
            "paged": cursor is not None,
            "filtered": any(filters.values()) or query.status is not None,
            "workflows": workflows,
            "limit": limit,
            "now": datetime.now(UTC),
            # A later page holds older runs; refreshing it would shift it under the reader.
            "refresh": None if cursor else REFRESH_SECONDS,
        },
    )


def _query(**params: str | list[str] | None) -> str:
    """The other filters, to carry along when one filter changes (``&workflow=…&label=…``)."""
    pairs = [
        (key, value)
        for key, values in params.items()
        for value in ([values] if isinstance(values, str) else values or [])
    ]
    return "".join(f"&{urlencode({key: value})}" for key, value in pairs)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, run_id: str) -> HTMLResponse:
    app = tether_app_of(request)
    loaded = await app.store.load_run(run_id)
    if loaded is None:
        raise UnknownRun(run_id)
    run = RunInfo.from_records(*loaded, await cut_calls(app.store, loaded[0]))
    (health,) = await verdicts(request, [run])
    now = datetime.now(UTC)
    finished = run.status in FINISHED_STATUSES
    return await render(
        request,
        "run.html",
        {
            "run": run,
            "health": health,
            "nodes": node_rows(request, run),
            "finished": finished,
            "approval_wait": await _approval_wait(app.store, run.waiting_for),
            "bars": timeline(run, now),
            "trace": build_trace(*loaded, now.timestamp()),
            "now": now,
            "cost": money(run.usage.cost_usd, run.usage.unpriced_calls),
            "duration": ((run.finished_at or now) - run.created_at).total_seconds(),
            # Finished runs do not change; refreshing them would only cost queries.
            "refresh": None if finished else REFRESH_SECONDS,
        },
    )


async def _approval_wait(store: Store, waiting_for: str | None) -> str | None:
    """The approval request id when the run waits on one (``approval:<id>`` with a recorded
    request): its page offers the review link instead of a generic signal form."""
    prefix, sep, approval_id = (waiting_for or "").partition(":")
    if prefix != APPROVAL_SIGNAL_PREFIX or not sep or not approval_id:
        return None
    return approval_id if await store.get_trust_action(approval_id) is not None else None
