"""Charts for the Stats and Cost pages: figures over time per group, drawn as inline SVG on the
server (the dashboard loads nothing from elsewhere), and the group-by choices offered as
selects built from the data.

A series is one group of the report (a node, a model, a prompt version, a label value…); each
point is the observe layer's report over one slice of the window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

from tether.app import App

BUCKETS = 12
"""Slices of the window a chart shows."""
MAX_SERIES = 6
"""Groups drawn per chart (the busiest); the table below lists them all."""
COLORS = ("#2b6cb0", "#c05621", "#2f855a", "#805ad5", "#b83280", "#4a5568")
WINDOWS = ("1h", "24h", "7d", "30d")
"""The window choices of the pages."""


@dataclass
class Series:
    """One group over time."""

    name: str
    points: list[float | None]
    total_calls: int = 0
    marked: list[str] = field(default_factory=list[str])
    """Change-detection findings about this group (shown with the series)."""


async def dimension_choices(app: App, since: float) -> list[str]:
    """What a report can be grouped by: tether's dimensions, then the label keys of the runs
    created in the window (so a select offers exactly what the data has)."""
    from tether.observe.window import KNOWN_DIMENSIONS

    runs = await app.list_runs_async(since=since, limit=1000)
    keys = sorted({k for run in runs for k in run.labels if not k.startswith("tether.")})
    return [*KNOWN_DIMENSIONS, *(k for k in keys if k not in KNOWN_DIMENSIONS)]


def bucket_edges(start: float, end: float, buckets: int = BUCKETS) -> list[tuple[float, float]]:
    step = (end - start) / buckets
    return [(start + i * step, start + (i + 1) * step) for i in range(buckets)]


def group_name(group: dict[str, Any]) -> str:
    return " · ".join("—" if v is None else str(v) for v in group.values())


async def over_time(
    report: Callable[[float, float], Any],
    edges: Sequence[tuple[float, float]],
    metrics: dict[str, Callable[[Any], float | None]],
) -> dict[str, list[Series]]:
    """For each metric, one series per group: `report(since, until)` gives a slice's rows."""
    values: dict[str, dict[str, list[float | None]]] = {m: {} for m in metrics}
    calls: dict[str, int] = {}
    for i, (since, until) in enumerate(edges):
        for row in await report(since, until):
            name = group_name(row.group)
            calls[name] = calls.get(name, 0) + int(getattr(row, "calls", 0) or 0)
            for metric, pick in metrics.items():
                series = values[metric].setdefault(name, [None] * len(edges))
                series[i] = pick(row)
    busiest = sorted(calls, key=lambda name: -calls[name])[:MAX_SERIES]
    return {
        metric: [Series(name, by_group[name], calls[name]) for name in busiest if name in by_group]
        for metric, by_group in values.items()
    }


def _label_time(ts: float, span: float) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%H:%M" if span <= 2 * 86400 else "%m-%d")


def svg_chart(
    title: str,
    series: Sequence[Series],
    edges: Sequence[tuple[float, float]],
    *,
    unit: Callable[[float], str],
    chart_id: str,
) -> Markup:
    """A line chart: one polyline per series, x = slices of the window, y from 0 to the
    largest value; findings marked with a flag in the legend and a ring on the line."""
    width, height, left, right, top, bottom = 640, 200, 56, 12, 14, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((p for s in series for p in s.points if p is not None), default=0.0) or 1.0
    n = max(len(edges), 1)

    def x(i: int) -> float:
        return left + (i + 0.5) * plot_w / n

    def y(v: float) -> float:
        return top + plot_h - v / peak * plot_h

    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - right}" '
        f'y2="{top + plot_h}"/>',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/>',
        f'<text class="tick" x="{left - 4}" y="{top + 4}" text-anchor="end">'
        f"{escape(unit(peak))}</text>",
        f'<text class="tick" x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    span = (edges[-1][1] - edges[0][0]) if edges else 0.0
    for i in (0, n // 2, n - 1):
        if edges:
            parts.append(f'<text class="tick" x="{x(i):.1f}" y="{height - 6}" '
                         f'text-anchor="middle">{_label_time(edges[i][0], span)}</text>')
    for k, s in enumerate(series):
        color = COLORS[k % len(COLORS)]
        points = [(x(i), y(v)) for i, v in enumerate(s.points) if v is not None]
        attrs = f'data-series="{escape(s.name)}" stroke="{color}"'
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polyline class="line" {attrs} fill="none" points="{path}"/>')
        for px, py in points:
            parts.append(f'<circle class="dot" {attrs} fill="{color}" cx="{px:.1f}" '
                         f'cy="{py:.1f}" r="2.5"><title>{escape(s.name)}</title></circle>')
        if s.marked and points:
            px, py = points[0]
            parts.append(f'<circle class="finding" data-finding="{escape(s.name)}" cx="{px:.1f}" '
                         f'cy="{py:.1f}" r="7" fill="none" stroke="#c53030" stroke-width="2">'
                         f"<title>{escape('; '.join(s.marked))}</title></circle>")
    parts.append("</svg>")
    legend = "".join(
        f'<li data-legend="{escape(s.name)}"><span class="swatch" '
        f'style="background:{COLORS[k % len(COLORS)]}"></span>{escape(s.name)}'
        + (f' <b class="error-text" title="{escape("; ".join(s.marked))}">⚑ change</b>'
           if s.marked else "")
        + "</li>"
        for k, s in enumerate(series)
    )
    empty = "" if series else '<p class="empty small">No data in this window.</p>'
    return Markup(
        f'<figure class="chart-box"><figcaption>{escape(title)}</figcaption>{empty}'
        f'{"".join(parts) if series else ""}<ul class="chart-legend">{legend}</ul></figure>'
    )


def seconds_unit(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def percent_unit(value: float) -> str:
    return f"{value * 100:.0f}%"


def money_unit(value: float) -> str:
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"
