"""How runs and journals look on a terminal (Rich) and in `--json` output.

The table builders and the JSON shapes live together so that a column added to one is easy
to add to the other; every command prints through these.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from tether.engine.records import RunInfo, StepInfo
    from tether.observe.health import Verdict


STATUS_STYLES = {
    "queued": "blue",
    "running": "cyan",
    "waiting": "yellow",
    "succeeded": "green",
    "failed": "bold red",
    "refused": "magenta",
    "cancelled": "dim",
    # step statuses
    "completed": "green",
    "retrying": "yellow",
}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def format_duration(seconds: float | None) -> str:
    """``850 ms``, ``2.4 s``, ``3m 05s``, ``2h 07m``, ``3d 04h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def format_time(moment: datetime | None) -> str:
    """A UTC timestamp to the second; ``-`` when unknown."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_relative(moment: datetime | None, now: float | None = None) -> str:
    """``in 4.0 s`` / ``12m 03s ago`` relative to now."""
    if moment is None:
        return "-"
    delta = moment.timestamp() - (time.time() if now is None else now)
    return f"in {format_duration(delta)}" if delta >= 0 else f"{format_duration(-delta)} ago"


def format_labels(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def format_cost(info: RunInfo) -> str:
    usage = info.usage
    if not usage.tokens and not usage.cost_usd and not usage.unpriced_calls:
        return "-"
    text = f"{usage.tokens:,} tokens, ${usage.cost_usd:.4f}"
    if usage.unpriced_calls:
        text += f" (+{usage.unpriced_calls} unpriced call(s))"
    over = info.overshoot
    if over:
        parts = [f"${over['cost_usd']:.4f}" if over.get("cost_usd") else "",
                 f"{int(over['tokens']):,} tokens" if over.get("tokens") else ""]
        text += f"; over its reservations by {', '.join(p for p in parts if p)}"
    return text


def format_cut(info: RunInfo) -> str:
    """The calls cut by crashes: how many and their worst case (not in the run's usage)."""
    usage = info.cut_usage
    calls = len(info.cut)
    tokens = f"{usage.tokens:,} tokens"
    bound = f"${usage.cost_usd:.4f} ({tokens})" if usage.cost_usd else tokens
    if usage.unpriced_calls:
        bound += f" (+{usage.unpriced_calls} unpriced)"
    steps = ", ".join(str(seq) for seq in sorted({c.seq for c in info.cut}))
    return (f"{calls} call{'s' if calls != 1 else ''} sent by workers that died, stopped or lost "
            f"the run mid-call (seq {steps}), never journaled: up to {bound} on top of the "
            "usage above, if the provider billed them")


def format_recoveries(info: RunInfo) -> str:
    text = str(info.recoveries)
    if not info.recoveries or info.cut:
        return text
    lost = [s.seq for s in info.steps if _lost_send(info, s)]
    if lost:
        text += (f" (a lost worker was in seq {', '.join(map(str, lost))}: its call may have "
                 "been sent and billed once more than the journal says; without a budget "
                 "or spend limit its cost is not known)")
    elif info.budget is None and any(s.usage.llm_calls for s in info.steps):
        # Without a budget or a spend limit nothing is written before a call is sent.
        text += (" (a model call in flight at a takeover was sent again; such calls are "
                 "counted only for runs with a budget or a spend limit)")
    return text


def format_tries(info: RunInfo, step: StepInfo) -> str:
    """Journaled attempts, plus the sends of workers that died (``3 (1 cut)``), or a send a
    lost worker may have made (``1 (+1 lost)``: a run without a budget)."""
    cut = info.cut_sends(step.seq) if info.cut else 0
    if cut:
        return f"{step.attempts + cut} ({cut} cut)"
    return f"{step.attempts} (+1 lost)" if _lost_send(info, step) else str(step.attempts)


def _lost_send(info: RunInfo, step: StepInfo) -> bool:
    """Marked `LOST_SEND` and not listed among the run's cut calls (those say more)."""
    from tether.engine.ledger import LOST_SEND

    return bool(step.meta.get(LOST_SEND)) and not (info.cut and info.cut_sends(step.seq))


def run_duration(info: RunInfo) -> float | None:
    """Wall time from creation to the end (or to now for an unfinished run)."""
    end = info.finished_at.timestamp() if info.finished_at else time.time()
    return end - info.created_at.timestamp()


def error_line(error: dict[str, Any] | None, width: int = 0) -> str:
    if not error:
        return ""
    kind = str(error.get("type") or "Error")
    message = str(error.get("message") or "")
    text = f"{kind}: {message}" if message else kind
    if width and len(text) > width:
        text = text[: width - 1] + "…"
    return text


# --- tables -----------------------------------------------------------------------------------


def runs_table(runs: list[RunInfo], verdicts: dict[str, Verdict] | None = None) -> Table:
    """One row per run, newest first (as listed). Narrow borders: the full run id must fit
    an 80-column terminal so it can be copied into `tether show`."""
    from tether.observe.health import VERDICT_STYLE, render_verdict

    table = Table(
        title=f"{len(runs)} run(s)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )
    table.add_column("run", no_wrap=True, min_width=24)
    table.add_column("workflow", overflow="fold", max_width=24)
    table.add_column("status", no_wrap=True)
    table.add_column("steps", justify="right", no_wrap=True)
    table.add_column("created", no_wrap=True)
    table.add_column("took", justify="right", no_wrap=True)
    # No min_width here: when the other columns leave the detail less than a minimum, Rich
    # wraps its text at the minimum and then crops each line to the narrower column, so a
    # letter per line vanished ("serves hell" for "serves hello" at 80 columns).
    table.add_column("labels / detail", overflow="fold")
    for info in runs:
        detail = Text(format_labels(info.labels) if info.labels else "", style="dim")
        verdict = (verdicts or {}).get(info.id)
        running = info.status == "running"
        if not (running and verdict is not None) and (extra := _detail(info)):
            detail.append(("  " if detail else "") + extra, style=_detail_style(info))
        if verdict is not None and shows_health(info, verdict):
            # Stuck or just slow: the first thing an operator wants to know of a running run
            # (and of a queued or waiting one no live worker serves).
            detail.append(
                ("  " if detail else "") + render_verdict(verdict),
                style=VERDICT_STYLE[verdict.verdict],
            )
        table.add_row(
            info.id,
            _workflow(info),
            _run_status(info),
            str(len(info.steps)),
            format_created(info.created_at),
            format_duration(run_duration(info)),
            detail,
        )
    return table


def format_created(moment: datetime, now: float | None = None) -> str:
    """``07:03:54`` today, ``11-25 07:03`` within the year, else the date."""
    now_dt = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    moment = moment.astimezone(UTC)
    if moment.date() == now_dt.date():
        return moment.strftime("%H:%M:%S")
    if moment.year == now_dt.year:
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%Y-%m-%d")


def _detail_style(info: RunInfo) -> str:
    return "red" if info.error and info.status == "failed" else ""


def run_header(info: RunInfo) -> Table:
    """The run's vital signs as a two-column grid."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("run", info.id)
    grid.add_row(
        "workflow",
        _workflow(info) + ("" if info.version else " (version pinned by the first worker)"),
    )
    grid.add_row("status", status_text(info.status))
    if info.child_of:
        grid.add_row("child of", info.child_of)
    elif info.parent_id:
        grid.add_row("forked from", info.parent_id)
    if info.children:
        grid.add_row("children", ", ".join(info.children))
    grid.add_row("labels", format_labels(info.labels))
    grid.add_row("started by", info.started_by or "—")
    grid.add_row("created", format_time(info.created_at) + " UTC")
    if info.started_at:
        grid.add_row("started", format_time(info.started_at) + " UTC")
    if info.finished_at:
        grid.add_row("finished", format_time(info.finished_at) + " UTC")
    grid.add_row("duration", format_duration(run_duration(info)))
    grid.add_row("usage", format_cost(info))
    if info.cut:
        grid.add_row("cut by crashes", Text(format_cut(info), style="yellow"))
    if info.status == "queued":
        # Stuck or just busy? A queued run only moves when a worker that has its workflow
        # (and version) is free.
        since = info.updated_at.timestamp()
        capacity = info.waiting_for if (info.waiting_for or "").startswith("capacity") else None
        grid.add_row(
            "queued",
            f"for {format_duration(time.time() - since)}; "
            + (f"waiting for {capacity}, then " if capacity else "")
            + "runs on the next free worker "
            f"that has {_workflow(info) if info.version else info.workflow + ' (any version)'}",
        )
    if info.status == "waiting":
        grid.add_row("waiting for", _waiting(info))
    delayed = info.wake_at is not None and info.wake_at.timestamp() > time.time()
    if info.wake_at is not None and (info.status == "waiting" or (info.status == "queued" and delayed)):
        grid.add_row("wakes", f"{format_time(info.wake_at)} UTC ({format_relative(info.wake_at)})")
    if info.status == "running":
        owner = info.lease_owner or "-"
        if info.lease_expires is not None:
            owner += f" (lease expires {format_relative(info.lease_expires)})"
        grid.add_row("lease owner", owner)
        if info.progress:
            grid.add_row("in", _progress(info.progress))
    grid.add_row("recoveries", format_recoveries(info))
    for part in info.degraded:
        grid.add_row("degraded", Text(_degradation(part), style="yellow"))
    if info.error:
        text = Text(error_line(info.error), style="red")
        if info.error.get("traceback"):
            text.append(f"\n(traceback: tether show {info.id} --json)", style="dim")
        grid.add_row("error", text)
    if info.status == "succeeded" and info.output is not None:
        grid.add_row("output", _short(info.output, 200))
    return grid


def _run_status(info: RunInfo) -> Text:
    text = status_text(info.status)
    if info.degraded:
        text.append(" degraded", style="yellow")
    return text


def _degradation(part: dict[str, Any]) -> str:
    error = part.get("error") or {}
    cause = f"{error.get('type', 'error')}: {_short(error.get('message', ''), 120)}"
    if part.get("how") == "fallback":
        return f"node {part.get('node')} failed ({cause}); {part.get('backup')} answered instead"
    return f"node {part.get('node')} skipped ({cause}); its default was used"


def steps_table(info: RunInfo) -> Table:
    """The step journal: what ran, how often, how long, and how it ended."""
    table = Table(
        title=f"journal ({len(info.steps)} entries)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )
    # Step names wrap (fold) rather than end in "…": they are what `tether fork --from` and
    # the stats name, so they must be readable whole in an 80-column terminal.
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("step", no_wrap=True, overflow="fold")
    table.add_column("kind", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("tries", justify="right", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for step in info.steps:
        table.add_row(
            str(step.seq),
            step.name,
            step.kind,
            status_text(step.status),
            format_tries(info, step),
            format_duration(step.duration),
            _step_detail(info, step),
        )
    return table


def run_view(info: RunInfo, verdict: Verdict | None = None) -> Group:
    from tether.observe.health import VERDICT_STYLE, render_verdict

    journal = steps_table(info) if info.steps else Text("journal: no steps yet", style="dim")
    parts: list[Any] = [run_header(info)]
    if verdict is not None and shows_health(info, verdict):
        health = Text("health    ", style="bold")
        health.append(render_verdict(verdict), style=VERDICT_STYLE[verdict.verdict])
        if verdict.usual_p95 is not None:
            health.append(f"  (usual p95 {format_duration(verdict.usual_p95)})", style="dim")
        parts.append(health)
    return Group(*parts, Text(""), journal)


# --- JSON shapes ------------------------------------------------------------------------------


def shows_health(info: RunInfo, verdict: Verdict | None) -> bool:
    """A running run's verdict always shows; another run's only when it is flagged (a queued
    or waiting run no live worker serves)."""
    return verdict is not None and (info.status == "running" or verdict.verdict != "ok")


def run_summary(info: RunInfo, verdict: Verdict | None = None) -> dict[str, Any]:
    """What `tether runs --json` prints per run (`health`: the stuck/slow verdict of a
    running run, or the flag of a queued/waiting run no live worker serves)."""
    return {
        "health": verdict.to_dict() if verdict is not None and shows_health(info, verdict) else None,
        "id": info.id,
        "workflow": info.workflow,
        "version": info.version,
        "status": info.status,
        "labels": info.labels,
        "started_by": info.started_by,
        "tether_labels": info.tether_labels,
        "steps": len(info.steps),
        "created_at": _iso(info.created_at),
        "finished_at": _iso(info.finished_at),
        "duration_s": run_duration(info),
        "waiting_for": info.waiting_for,
        "wake_at": _iso(info.wake_at),
        "recoveries": info.recoveries,
        "degraded": info.degraded,
        "tokens": info.tokens,
        "cost_usd": info.cost_usd,
        # Listings stay small: the traceback is in `tether show RUN --json`.
        "error": {k: v for k, v in info.error.items() if k != "traceback"} if info.error else None,
    }


def run_detail(info: RunInfo, verdict: Verdict | None = None) -> dict[str, Any]:
    """What `tether show --json` prints: the summary, input/output and the journal."""
    detail = run_summary(info, verdict)
    detail.update(
        error=info.error,
        input=info.input,
        output=info.output,
        parent_id=info.parent_id,
        child_of=info.child_of,
        children=info.children,
        started_at=_iso(info.started_at),
        updated_at=_iso(info.updated_at),
        lease_owner=info.lease_owner,
        lease_expires=_iso(info.lease_expires),
        progress=info.progress,
        budget=info.budget,
        usage=info.usage.to_dict(),
        overshoot=info.overshoot or None,
        cut_by_crashes=cut_detail(info),
        journal=[step_detail(step, info) for step in info.steps],
    )
    return detail


def cut_detail(info: RunInfo) -> dict[str, Any] | None:
    """The calls cut by crashes, for ``--json``: ``None`` when there were none (or the run
    had no budget and no spend limit to record them)."""
    if not info.cut:
        return None
    return {
        "calls": len(info.cut),
        "worst_case": info.cut_usage.to_dict(),
        "sends": [{"seq": c.seq, "token": c.token, "worst_case": c.usage,
                   "at": _iso(datetime.fromtimestamp(c.created_at, UTC))} for c in info.cut],
    }


def step_detail(step: StepInfo, info: RunInfo | None = None) -> dict[str, Any]:
    cut = info.cut_sends(step.seq) if info is not None and info.cut else 0
    return {
        "seq": step.seq,
        "name": step.name,
        "kind": step.kind,
        "status": step.status,
        "attempts": step.attempts,
        "cut_sends": cut,
        "duration_s": step.duration,
        "started_at": _iso(step.started_at),
        "finished_at": _iso(step.finished_at),
        "wake_at": _iso(step.wake_at),
        "input": step.input,
        "output": step.output,
        "error": step.error,
        "usage": step.usage.to_dict(),
        "meta": step.meta,
    }


# --- helpers ----------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _workflow(info: RunInfo) -> str:
    # No version yet: started by name, the first worker that has the workflow pins it.
    return f"{info.workflow}@{info.version}" if info.version else info.workflow


def _waiting(info: RunInfo) -> str:
    if info.waiting_for:
        return f"signal {info.waiting_for!r}"
    if info.wake_at is not None and info.wake_at.timestamp() <= time.time():
        return "timer (due: the next free worker resumes it)"
    return "timer"


def _detail(info: RunInfo) -> str:
    if info.error:
        return error_line(info.error, 80)
    if info.status == "waiting":
        text = f"signal {info.waiting_for!r}" if info.waiting_for else "timer"
        if info.wake_at is not None:
            due = info.wake_at.timestamp() <= time.time()
            text += f", {'due' if due else 'wakes'} {format_relative(info.wake_at)}"
        return text
    if info.status == "running" and info.lease_owner:
        return f"on {info.lease_owner}"
    return ""


def _progress(progress: dict[str, Any]) -> str:
    text = f"#{progress.get('seq', '?')} {progress.get('name', '?')}"
    started = progress.get("started_at")
    if isinstance(started, int | float):
        text += f" for {format_duration(time.time() - started)}"
    return text


def _step_detail(info: RunInfo, step: StepInfo) -> Text:
    if step.error and step.status in ("failed", "retrying"):
        text = error_line(step.error, 100)
        if step.status == "retrying" and step.wake_at is not None:
            text += f" (next attempt {format_relative(step.wake_at)})"
        return Text(text, style="red" if step.status == "failed" else "yellow")
    if step.status == "waiting":
        if step.wake_at is None:
            return Text("until the signal arrives")
        return Text(f"until {format_time(step.wake_at)} UTC ({format_relative(step.wake_at)})")
    parts: list[str] = []
    if step.kind in ("signal", "value") and step.status == "completed":
        parts.append(_short(step.output, 60))
    model = step.meta.get("model") or step.meta.get("gen_ai.request.model")
    if model:
        parts.append(str(model))
    if step.usage.tokens:
        parts.append(f"{step.usage.tokens:,} tokens")
    if step.usage.cost_usd:
        parts.append(f"${step.usage.cost_usd:.4f}")
    text = Text(", ".join(parts))
    sends = info.cut_sends(step.seq) if info.cut else 0
    if sends:
        cut = info.cut_usage_of(step.seq)
        worst = f"${cut.cost_usd:.4f}" if cut.cost_usd else f"{cut.tokens:,} tokens"
        text.append(f"{'; ' if parts else ''}{sends} more sent by workers that died, "
                    f"not journaled: up to {worst}", style="yellow")
    elif _lost_send(info, step):
        text.append(f"{'; ' if parts else ''}also in flight on a worker lost mid-step: maybe "
                    "sent and billed once more, not journaled (cost unknown)", style="yellow")
    return text


def _short(value: Any, width: int) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"
