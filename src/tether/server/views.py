"""How runs and steps look on the wire (JSON) and on the page (numbers already formatted).

The API and the dashboard read the same `RunInfo`; keeping both projections here means a field
shown on the page is always the one the API returns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tether.engine.budget import Usage
from tether.engine.records import RunInfo, StepInfo
from tether.engine.serde import to_jsonable


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def usage_json(usage: Usage) -> dict[str, Any]:
    """Every usage field, zeros included, so clients need no defaults."""
    return {
        "llm_calls": usage.llm_calls,
        "tool_calls": usage.tool_calls,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "tokens": usage.tokens,
        "cost_usd": usage.cost_usd,
        "unpriced_calls": usage.unpriced_calls,
    }


def step_json(step: StepInfo, cut_sends: int = 0) -> dict[str, Any]:
    """One journal entry as the API returns it (`cut_sends`: `RunInfo.cut_sends`)."""
    return {
        "seq": step.seq,
        "name": step.name,
        "kind": step.kind,
        "status": step.status,
        "attempts": step.attempts,
        "cut_sends": cut_sends,
        "input": to_jsonable(step.input, what=f"the input of step #{step.seq}"),
        "output": to_jsonable(step.output, what=f"the output of step #{step.seq}"),
        "error": step.error,
        "started_at": _iso(step.started_at),
        "finished_at": _iso(step.finished_at),
        "wake_at": _iso(step.wake_at),
        "duration": step.duration,
        "usage": usage_json(step.usage),
        "meta": to_jsonable(step.meta, what=f"the meta of step #{step.seq}"),
    }


def run_summary_json(run: RunInfo) -> dict[str, Any]:
    """A run without its journal (for listings)."""
    return {
        "id": run.id,
        "workflow": run.workflow,
        "version": run.version,
        "status": run.status,
        "labels": run.labels,
        "started_by": run.started_by,
        "tether_labels": run.tether_labels,
        "waiting_for": run.waiting_for,
        "error": run.error,
        "parent_id": run.parent_id,
        "child_of": run.child_of,
        "children": run.children,
        "created_at": _iso(run.created_at),
        "updated_at": _iso(run.updated_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "wake_at": _iso(run.wake_at),
        "steps": len(run.steps),
        "tokens": run.tokens,
        "cost_usd": run.cost_usd,
        "usage": usage_json(run.usage),
        "recoveries": run.recoveries,
        "degraded": run.degraded,
        "progress": run.progress,
    }


def run_json(run: RunInfo) -> dict[str, Any]:
    """A run with its input, output, budget, lease and whole journal."""
    data = run_summary_json(run)
    data.update(
        {
            "input": to_jsonable(run.input, what=f"the input of run {run.id}"),
            "output": to_jsonable(run.output, what=f"the output of run {run.id}"),
            "budget": run.budget,
            "lease_owner": run.lease_owner,
            "lease_expires": _iso(run.lease_expires),
            # Sent by workers that died or lost the run, never journaled: not in `usage`.
            "cut_by_crashes": {
                "calls": len(run.cut),
                "worst_case": usage_json(run.cut_usage),
                "sends": [{"seq": c.seq, "worst_case": c.usage} for c in run.cut],
            } if run.cut else None,
            "journal": [step_json(step, run.cut_sends(step.seq) if run.cut else 0)
                        for step in run.steps],
        }
    )
    return data


# --- page helpers ------------------------------------------------------------------------------


def pretty(value: Any) -> str:
    """Indented JSON for <pre> blocks (Jinja escapes it)."""
    return json.dumps(to_jsonable(value, what="value"), indent=2, sort_keys=True, default=str)


def seconds(value: float | None) -> str:
    """A duration a person reads at a glance: 850 ms, 2.4 s, 3 min 5 s, 2 h 10 min, 3 d 4 h."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    if value < 86400:
        return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"
    return f"{int(value // 86400)} d {int(value % 86400 // 3600)} h"


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "—"
    delta = ((now or datetime.now(UTC)) - value).total_seconds()
    if delta < 0:
        return "in " + seconds(-delta)
    return seconds(delta) + " ago"


def clock(value: datetime | None) -> str:
    """UTC time of day, with the date when it is not today."""
    if value is None:
        return "—"
    now = datetime.now(UTC)
    if value.date() == now.date():
        return value.strftime("%H:%M:%S")
    return value.strftime("%Y-%m-%d %H:%M")


def money(usd: float, unpriced: int = 0) -> str:
    """Dollars with enough digits for cheap calls; unpriced calls are shown, never hidden."""
    text = f"${usd:.4f}" if usd < 1 else f"${usd:,.2f}"
    if unpriced:
        text += f" + {unpriced} unpriced"
    return text


@dataclass(frozen=True, slots=True)
class TimelineBar:
    """Where one step sits on the run's time axis, in percent of the run's span."""

    left: float
    width: float
    open: bool
    """The step has not finished (a wait, or running now): the bar runs to the axis end."""


def timeline(run: RunInfo, now: datetime | None = None) -> dict[int, TimelineBar]:
    """A bar per journaled step on one axis from the run's creation to its end (or now)."""
    start = run.created_at
    end = run.finished_at or now or datetime.now(UTC)
    for step in run.steps:
        if step.finished_at is not None and step.finished_at > end:
            end = step.finished_at
    span = max((end - start).total_seconds(), 1e-6)
    bars: dict[int, TimelineBar] = {}
    for step in run.steps:
        if step.started_at is None:
            continue
        left = max(0.0, (step.started_at - start).total_seconds() / span * 100)
        finish = step.finished_at
        open_ = finish is None
        width = ((finish or end) - step.started_at).total_seconds() / span * 100
        # A 2 ms step in a 3-day run must still be visible.
        width = max(width, 0.6)
        left = min(left, 100 - width)
        bars[step.seq] = TimelineBar(left=round(left, 2), width=round(width, 2), open=open_)
    return bars


def step_error_text(error: dict[str, Any] | None) -> str:
    if not error:
        return ""
    kind = error.get("type") or "error"
    return f"{kind}: {error.get('message') or ''}".strip()
