"""Stuck or just slow? A verdict for each running run.

A running run's worker refreshes, with every heartbeat (each third of the lease), the operation
the run is in (`RunRecord.progress`: seq, name, kind, node, started_at, timeout). From that:

* **stuck** — the lease expired and no worker took the run over (the worker died or is
  paused: its heartbeat is lost), or the current step is past its own timeout, or nothing
  has moved for `stall_after` seconds;
* **slow** — the current step has been running longer than `k` times that step's usual p95
  (from the journal of recent runs);
* **ok** — otherwise, with the reason (and for runs not running, their state).

A ``queued`` or ``waiting`` run is **stuck** as well when no live worker serves its workflow
version (see `tether.engine.presence`): after a deploy that dropped its version nothing would
ever claim it. The reason says whether to fork it onto a served version or start a worker.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from tether.engine.presence import Coverage, coverage
from tether.observe import names as n
from tether.observe.stats import percentile
from tether.observe.window import load_window

VerdictKind = Literal["ok", "slow", "stuck"]
DEFAULT_K = 3.0
DEFAULT_STALL_AFTER = 1800.0
"""With no baseline to compare against, a step running this long (or a run with no step
started or finished for this long) is considered stuck."""
MIN_BASELINE_SAMPLES = 5


@dataclass(frozen=True, slots=True)
class Verdict:
    """The health of one run."""

    verdict: VerdictKind
    reason: str
    current_step: str | None = None
    """``node/name #seq`` of the operation the run is in, when known."""
    time_in_step: float | None = None
    """Seconds since the current operation started."""
    usual_p95: float | None = None
    """That step's usual p95 duration in seconds, when there is history."""

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


@dataclass(slots=True)
class Baselines:
    """Usual durations of steps, by ``(node, step name)`` and by step name alone."""

    samples: dict[tuple[str | None, str], list[float]] = field(
        default_factory=dict[tuple[str | None, str], list[float]]
    )
    min_samples: int = MIN_BASELINE_SAMPLES

    def add(self, node: str | None, name: str, seconds: float) -> None:
        self.samples.setdefault((node, name), []).append(seconds)
        if node is not None:
            self.samples.setdefault((None, name), []).append(seconds)

    def p95(self, node: str | None, name: str) -> float | None:
        """The p95 for this node's step (or, lacking history, for the step name)."""
        for key in ((node, name), (None, name)):
            values = self.samples.get(key)
            if values and len(values) >= self.min_samples:
                return percentile(values, 95)
        return None


async def latency_baselines(
    source: Any, *, since: float | None = None, until: float | None = None
) -> Baselines:
    """Step durations of completed steps in the window (default: the last 7 days)."""
    until = until if until is not None else time.time()
    since = since if since is not None else until - 7 * 86400
    baselines = Baselines()
    for journal in await load_window(source, since, until):
        for rec in journal.leaf_steps(since, until):
            if rec.status == "completed" and rec.started_at is not None and rec.finished_at:
                node = (rec.meta or {}).get(n.NODE)
                baselines.add(None if node is None else str(node), rec.name,
                              rec.finished_at - rec.started_at)
    return baselines


def _seconds(value: float | datetime | None) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    return value


def assess(
    run: Any,
    steps: Sequence[Any] = (),
    stats: Baselines | None = None,
    *,
    now: float | None = None,
    k: float = DEFAULT_K,
    stall_after: float = DEFAULT_STALL_AFTER,
    served: Coverage | None = None,
) -> Verdict:
    """The verdict for a run (`RunRecord` or `RunInfo`) with its journal (`StepRecord`s or
    `StepInfo`s) against the usual step durations in `stats`; with `served` (the live
    workers), a queued or waiting run no live worker serves is stuck."""
    now = time.time() if now is None else now
    status = run.status
    if served is not None and status in ("queued", "waiting"):
        gap = served.gap(run.workflow, run.version, run.id)
        if gap is not None:
            return Verdict("stuck", gap)
    if status != "running":
        if status == "waiting":
            what = f"signal {run.waiting_for!r}" if run.waiting_for else "a timer"
            return Verdict("ok", f"waiting for {what}; holds no worker")
        return Verdict("ok", status)
    progress: dict[str, Any] | None = getattr(run, "progress", None)
    current = time_in = p95 = None
    if progress:
        node = progress.get("node")
        name = str(progress.get("name"))
        current = f"{node + '/' if node else ''}{name} #{progress.get('seq')}"
        started = _seconds(progress.get("started_at"))
        time_in = None if started is None else max(0.0, now - started)
        p95 = stats.p95(None if node is None else str(node), name) if stats else None
    lease_expires = _seconds(run.lease_expires)
    if lease_expires is not None and lease_expires < now:
        return Verdict(
            "stuck",
            f"heartbeat lost: the lease of worker {run.lease_owner} expired "
            f"{now - lease_expires:.1f}s ago and no worker has taken the run over "
            "(is any worker running this workflow?)",
            current, time_in, p95,
        )
    if progress and time_in is not None:
        timeout = progress.get("timeout")
        if timeout is not None and time_in > float(timeout) + 1.0:
            return Verdict(
                "stuck",
                f"past its timeout: {current} has run {time_in:.1f}s, its timeout is "
                f"{float(timeout):g}s (the step ignores cancellation, e.g. a blocking call "
                "in a thread)",
                current, time_in, p95,
            )
        if p95 is not None and time_in > k * p95:
            if time_in > max(stall_after, 10 * k * p95):
                return Verdict(
                    "stuck",
                    f"no progress: {current} has run {time_in:.1f}s, {time_in / p95:.0f}x "
                    f"its usual p95 of {p95:.3f}s",
                    current, time_in, p95,
                )
            return Verdict(
                "slow",
                f"{current} has run {time_in:.1f}s, {time_in / p95:.1f}x its usual p95 of "
                f"{p95:.3f}s (slow past {k:g}x)",
                current, time_in, p95,
            )
        if p95 is None and time_in > stall_after:
            return Verdict(
                "stuck",
                f"no progress: {current} has run {time_in:.1f}s with no history to compare "
                f"(stuck past {stall_after:g}s)",
                current, time_in, p95,
            )
        usual = f", usual p95 {p95:.3f}s" if p95 is not None else ""
        return Verdict("ok", f"in {current} for {time_in:.1f}s{usual}", current, time_in, p95)
    last = _last_activity(run, steps)
    idle = None if last is None else now - last
    if idle is not None and idle > stall_after:
        return Verdict(
            "stuck",
            f"no progress: no step started or finished for {idle:.0f}s",
            None, idle, None,
        )
    return Verdict("ok", "running, between steps")


def _last_activity(run: Any, steps: Sequence[Any]) -> float | None:
    times = [_seconds(run.started_at)]
    for step in steps:
        times.append(_seconds(step.finished_at))
        times.append(_seconds(step.started_at))
    known = [t for t in times if t is not None]
    return max(known) if known else None


def render_verdict(verdict: Verdict) -> str:
    """One line for `tether runs` / `tether show`: ``stuck: heartbeat lost: …``."""
    return f"{verdict.verdict}: {verdict.reason}"


VERDICT_STYLE = {"ok": "green", "slow": "yellow", "stuck": "bold red"}
"""Rich styles for the verdicts, for the CLI and dashboard."""


async def assess_runs(
    app: Any, runs: Sequence[Any], *, k: float = DEFAULT_K, stall_after: float = DEFAULT_STALL_AFTER
) -> list[Verdict]:
    """Verdicts for several runs (`RunInfo`s with their steps, e.g. from `app.list_runs`),
    reading the usual step durations once. What `tether runs` / `tether show` call."""
    needs_history = any(getattr(run, "status", None) == "running" for run in runs)
    baselines = await latency_baselines(app) if needs_history else None
    served = await live_coverage(app, runs)
    now = time.time()
    return [
        assess(run, getattr(run, "steps", ()), baselines, now=now, k=k, stall_after=stall_after,
               served=served)
        for run in runs
    ]


async def live_coverage(app: Any, runs: Sequence[Any]) -> Coverage | None:
    """The live workers, when some of `runs` wait to be claimed (``None`` otherwise, or when
    the store cannot say: the verdicts then leave the worker registry out)."""
    if not any(getattr(run, "status", None) in ("queued", "waiting") for run in runs):
        return None
    try:
        return await coverage(app.store)
    except Exception:
        return None
