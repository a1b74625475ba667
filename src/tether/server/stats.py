"""Stats, cost and run health from the observe layer (mounted only when that layer is present).

JSON under ``/api/stats`` and ``/api/cost``, pages ``/stats`` and ``/cost``, and the stuck /
slow verdict the runs API and pages attach to each run (`verdicts`). All figures come from the
observe layer's reports over the App; nothing here reads the store itself.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from tether.engine.records import RunInfo
from tether.errors import UserError
from tether.server.errors import ApiError
from tether.server.rendering import render, tether_app_of

router = APIRouter(tags=["stats"])
log = logging.getLogger("tether.server")

DEFAULT_SINCE = "7d"


def available(app: Any) -> bool:
    """Whether the observe layer's reports can be imported and the App's store can read the
    window of journals they are computed from."""
    return all(
        importlib.util.find_spec(f"tether.observe.{module}") is not None
        for module in ("stats", "attribution", "health", "changes")
    ) and callable(getattr(app.store, "load_window", None))


BASELINES_TTL = 60.0
"""Seconds the usual step durations are reused. They summarise days of history, and the pages
refresh every few seconds: reading the whole window on every refresh would be the dashboard's
main load on the store."""


async def verdicts(request: Request, runs: Sequence[RunInfo]) -> list[dict[str, Any] | None]:
    """The observe layer's ok / slow / stuck verdict per run (``None`` each without it)."""
    if not request.app.state.features.get("stats"):
        return [None] * len(runs)
    from tether.observe.health import assess, latency_baselines, live_coverage

    baselines = None
    if any(run.status == "running" for run in runs):
        cached: tuple[float, Any] | None = getattr(request.app.state, "baselines", None)
        if cached is None or time.monotonic() - cached[0] > BASELINES_TTL:
            try:
                found = await latency_baselines(tether_app_of(request))
            except Exception:
                # The runs list matters more than the slow verdict: without the usual
                # durations, lost heartbeats, timeouts and stalls are still reported as stuck.
                log.warning("cannot read usual step durations; slow verdicts are off", exc_info=True)
                found = None
            cached = (time.monotonic(), found)
            request.app.state.baselines = cached
        baselines = cached[1]
    served = await live_coverage(tether_app_of(request), runs)
    now = time.time()
    return [assess(run, run.steps, baselines, now=now, served=served).to_dict() for run in runs]


def node_rows(request: Request, run: RunInfo) -> list[Any]:
    """Cost and latency per pipeline node of one run (empty without the observe layer, or when
    no step belongs to a node)."""
    if not request.app.state.features.get("stats"):
        return []
    from tether.observe.attribution import node_summary

    rows = node_summary(run)
    return [] if all(row.node == "-" for row in rows) else rows


def _window(since: str) -> tuple[float, float]:
    from tether.observe.window import parse_duration

    try:
        seconds = parse_duration(since)
    except UserError as exc:
        raise ApiError(422, str(exc), type="ValidationError", field="since") from exc
    until = time.time()
    return until - seconds, until


async def _stats(request: Request, by: str, since: str, changes: bool) -> dict[str, Any]:
    from tether.observe.changes import detect_changes
    from tether.observe.stats import stats_report

    start, end = _window(since)
    app = tether_app_of(request)
    try:
        rows = await stats_report(app, by, since=start, until=end)
    except UserError as exc:
        raise ApiError(422, str(exc), type="ValidationError", field="by") from exc
    found = await detect_changes(app, since=start, until=end) if changes else []
    return {
        "by": by,
        "since": datetime.fromtimestamp(start, UTC).isoformat(),
        "groups": _group_keys(rows),
        "rows": [row.to_dict() for row in rows],
        "changes": [change.to_dict() | {"summary": change.describe()} for change in found],
    }


async def _cost(request: Request, by: str, since: str) -> dict[str, Any]:
    from tether.observe.attribution import cost_report

    start, end = _window(since)
    try:
        rows = await cost_report(tether_app_of(request), by, since=start, until=end)
    except UserError as exc:
        raise ApiError(422, str(exc), type="ValidationError", field="by") from exc
    return {
        "by": by,
        "since": datetime.fromtimestamp(start, UTC).isoformat(),
        "groups": _group_keys(rows),
        "rows": [row.to_dict() for row in rows],
        "total": {
            "cost_usd": sum(r.cost_usd for r in rows),
            "calls": sum(r.calls for r in rows),
            "unpriced_calls": sum(r.unpriced_calls for r in rows),
            # Apart from cost_usd: sent by workers that died mid-call, never journaled.
            "cut_calls": sum(r.cut_calls for r in rows),
            "cut_usd": sum(r.cut_usd for r in rows),
            "lost_sends": sum(r.lost_sends for r in rows),
        },
    }


def _group_keys(rows: Sequence[Any]) -> list[str]:
    """The grouping columns of a report (``team``, ``model``…), in the order asked for."""
    return list(rows[0].group) if rows else []


ByParam = Annotated[str, Query(description="Comma-separated dimensions: node, model, version, "
                               "app_version, workflow, step, or a label key.")]
SinceParam = Annotated[str, Query(description="A window like 30m, 12h, 7d.")]


@router.get("/api/stats")
async def stats(
    request: Request, by: ByParam = "node", since: SinceParam = DEFAULT_SINCE, changes: bool = False
) -> dict[str, Any]:
    """Runs, calls, p50/p95 latency, failures, refusals, retries, tokens and cost per group;
    with ``changes=true``, nodes whose latency, cost per call or failure rate moved."""
    return await _stats(request, by, since, changes)


@router.get("/api/cost")
async def cost(
    request: Request, by: ByParam = "team,model", since: SinceParam = DEFAULT_SINCE
) -> dict[str, Any]:
    """Spend of model calls grouped by labels and model, most expensive first; unpriced calls
    are counted apart, never as zero."""
    return await _cost(request, by, since)


def _by(by: str, then: str | None) -> str:
    first = by.split(",")[0] if by else "node"
    rest = [then] if then else by.split(",")[1:2]
    return ",".join([first, *[r for r in rest if r and r != first]])


async def _charts(request: Request, by: str, since: str, kind: str,
                  changes: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The charts of a page: its figures per group over the window, and the select choices."""
    from tether.observe.attribution import cost_report
    from tether.observe.stats import stats_report
    from tether.observe.window import KNOWN_DIMENSIONS
    from tether.server import charts

    start, end = _window(since)
    app = tether_app_of(request)
    edges = charts.bucket_edges(start, end)
    # The whole window's report has already checked the dimensions; a slice without runs
    # carrying a label would refuse the bare key, so slices ask for it explicitly.
    by = ",".join(
        d if d in KNOWN_DIMENSIONS or d.startswith("label:") else f"label:{d}"
        for d in by.split(",")
    )
    drawn: list[Any] = []
    if kind == "stats":
        series = await charts.over_time(
            lambda a, b: stats_report(app, by, since=a, until=b), edges,
            {"p50": lambda r: r.p50, "p95": lambda r: r.p95,
             "failures": lambda r: r.failure_rate, "spend": lambda r: r.cost_usd},
        )
        for found in changes:
            for metric_series in series.values():
                for one in metric_series:
                    if str(found.get("candidate")) in one.name.split(" · ") or (
                        found.get("node") in one.name.split(" · ")
                    ):
                        one.marked.append(str(found.get("summary")))
        drawn = [
            charts.svg_chart("latency p95 per slice", series["p95"], edges,
                             unit=charts.seconds_unit, chart_id="chart-p95"),
            charts.svg_chart("latency p50 per slice", series["p50"], edges,
                             unit=charts.seconds_unit, chart_id="chart-p50"),
            charts.svg_chart("failure rate", series["failures"], edges,
                             unit=charts.percent_unit, chart_id="chart-failures"),
            charts.svg_chart("spend", series["spend"], edges,
                             unit=charts.money_unit, chart_id="chart-spend"),
        ]
    else:
        series = await charts.over_time(
            lambda a, b: cost_report(app, by, since=a, until=b), edges,
            {"spend": lambda r: r.cost_usd},
        )
        drawn = [charts.svg_chart("spend over time", series["spend"], edges,
                                  unit=charts.money_unit, chart_id="chart-spend")]
    return {
        "charts": drawn,
        "choices": await charts.dimension_choices(app, start),
        "windows": charts.WINDOWS,
    }


@router.get("/stats", response_class=HTMLResponse, include_in_schema=False)
async def stats_page(
    request: Request, by: ByParam = "node", since: SinceParam = DEFAULT_SINCE,
    then: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    by = _by(by, then)
    report = await _stats(request, by, since, changes=True)
    extra = await _charts(request, by, since, "stats", report["changes"])
    return await render(
        request, "stats.html",
        {"report": report, "by": by, "dims": by.split(","), "since": since, "refresh": None,
         **extra},
    )


@router.get("/cost", response_class=HTMLResponse, include_in_schema=False)
async def cost_page(
    request: Request, by: ByParam = "team,model", since: SinceParam = DEFAULT_SINCE,
    then: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    by = _by(by, then)
    report = await _cost(request, by, since)
    extra = await _charts(request, by, since, "cost")
    return await render(
        request, "cost.html",
        {"report": report, "by": by, "dims": by.split(","), "since": since, "refresh": None,
         **extra},
    )
