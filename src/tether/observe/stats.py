"""Per-node / model / prompt-version / app-version / label figures over a time window.

Everything is computed from the journal: each function step (model call, tool call, plain
step) that ended in the window is one sample of latency (first attempt start to outcome),
tokens, cost, retries (more than one attempt) and failure (failed for good). Refusals are runs
that ended ``refused`` — counted apart from failures, since a refusal is the agent keeping to
its scope, not a fault.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tether.engine.ratelimits import RATE_WAIT
from tether.engine.records import DEGRADED
from tether.observe.window import (
    RunJournal,
    check_dimensions,
    dimension_value,
    display_names,
    is_model_call,
    load_window,
    parse_dimensions,
)
from tether.store.base import StepRecord

STEP_DIMENSIONS = frozenset(
    {"node", "model", "provider", "version", "prompt", "tools", "app_version", "step", "operation"}
)
"""Dimensions read from a step's meta; the others (workflow, status, labels) from its run."""
_NO_STEP = StepRecord(run_id="", seq=0, name="", kind="step", status="completed")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0-100) with linear interpolation; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(slots=True)
class StatsRow:
    """Figures for one group of steps."""

    group: dict[str, str | None]
    runs: int = 0
    steps: int = 0
    """Function steps that ended in the window (model calls, tool calls, plain steps)."""
    calls: int = 0
    """Model calls among them."""
    tool_calls: int = 0
    failures: int = 0
    """Steps that failed for good (retries exhausted or not retryable)."""
    refusals: int = 0
    """Runs of this group that ended ``refused`` (not failures)."""
    retries: int = 0
    """Steps that needed more than one attempt."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    rate_wait_seconds: float = 0.0
    """Time model steps waited for provider rate-limit capacity before sending."""
    queued_seconds: float = 0.0
    """Time the group's runs waited from being started to their first claim by a worker
    (waiting for a free worker or for capacity in their queue; a ``delay`` counts too)."""
    latencies: list[float] = field(default_factory=list[float], repr=False)

    @property
    def failure_rate(self) -> float | None:
        return None if not self.steps else self.failures / self.steps

    @property
    def p50(self) -> float | None:
        return percentile(self.latencies, 50)

    @property
    def p95(self) -> float | None:
        return percentile(self.latencies, 95)

    @property
    def cost_per_call(self) -> float | None:
        """Mean cost of a priced model call (unpriced calls are left out, not counted as 0)."""
        priced = self.calls - self.unpriced_calls
        return None if priced <= 0 else self.cost_usd / priced

    @property
    def cost_per_run(self) -> float | None:
        return None if not self.runs else self.cost_usd / self.runs

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.group,
            "runs": self.runs,
            "steps": self.steps,
            "calls": self.calls,
            "tool_calls": self.tool_calls,
            "p50_seconds": _round(self.p50),
            "p95_seconds": _round(self.p95),
            "failures": self.failures,
            "failure_rate": _round(self.failure_rate),
            "refusals": self.refusals,
            "retries": self.retries,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 10),
            "unpriced_calls": self.unpriced_calls,
            "rate_wait_seconds": round(self.rate_wait_seconds, 3),
            "queued_seconds": round(self.queued_seconds, 3),
            "cost_per_call": _round(self.cost_per_call, 10),
            "cost_per_run": _round(self.cost_per_run, 10),
        }


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def compute_stats(
    journals: list[RunJournal], by: str | list[str] | None, since: float, until: float
) -> list[StatsRow]:
    """Group the window's function steps by `by` (see `window.dimension_value`)."""
    dims = parse_dimensions(by, "node")
    rows: dict[tuple[str | None, ...], StatsRow] = {}
    run_sets: dict[tuple[str | None, ...], set[str]] = {}
    refused: dict[tuple[str | None, ...], set[str]] = {}

    def row_for(key: tuple[str | None, ...]) -> StatsRow:
        row = rows.get(key)
        if row is None:
            row = rows[key] = StatsRow(group=dict(zip(display_names(dims), key, strict=True)))
            run_sets[key] = set()
            refused[key] = set()
        return row

    check_dimensions(dims, journals)
    run_level = not any(d in STEP_DIMENSIONS for d in dims)
    # Grouped by node, a step outside any node (a workflow's own plain step, a value) is not
    # a node's figure: a "-" row of them would read as a node that did nothing.
    by_node = [i for i, d in enumerate(dims) if d == "node"]
    for journal in journals:
        run = journal.run
        touched = False
        for rec in journal.leaf_steps(since, until):
            touched = True
            key = tuple(dimension_value(d, journal, rec) for d in dims)
            if any(key[i] is None for i in by_node):
                continue
            # A degraded pipeline's decision (`{node}.skipped`, `{node}.fallback`) is bookkeeping
            # of the node, not work it did: counted as a step it would halve the failure rate of
            # a node whose every call failed and pull its latency towards zero.
            if (rec.meta or {}).get(DEGRADED):
                continue
            row = row_for(key)
            row.steps += 1
            usage = rec.usage or {}
            if is_model_call(rec):
                row.calls += int(usage.get("llm_calls") or 1)
            row.tool_calls += int(usage.get("tool_calls") or 0)
            row.input_tokens += int(usage.get("input_tokens") or 0)
            row.output_tokens += int(usage.get("output_tokens") or 0)
            row.cost_usd += float(usage.get("cost_usd") or 0.0)
            row.unpriced_calls += int(usage.get("unpriced_calls") or 0)
            row.retries += 1 if rec.attempts > 1 else 0
            row.failures += 1 if rec.status == "failed" else 0
            if rec.started_at is not None and rec.finished_at is not None:
                row.latencies.append(rec.finished_at - rec.started_at)
            row.rate_wait_seconds += float((rec.meta or {}).get(RATE_WAIT) or 0.0)
            if run.id not in run_sets[key] and run.started_at is not None:
                row.queued_seconds += max(0.0, run.started_at - run.created_at)
            run_sets[key].add(run.id)
            if run.status == "refused":
                refused[key].add(run.id)
        # A run refused at its scope gate may have no step at all: it still counts when the
        # grouping is by run-level dimensions (workflow, status, labels).
        ended_in_window = run.finished_at is not None and since <= run.finished_at < until
        if not touched and run_level and ended_in_window:
            key = tuple(dimension_value(d, journal, _NO_STEP) for d in dims)
            row_for(key)
            run_sets[key].add(run.id)
            if run.status == "refused":
                refused[key].add(run.id)
    for key, row in rows.items():
        row.runs = len(run_sets[key])
        row.refusals = len(refused[key])
    return sorted(rows.values(), key=lambda r: [str(v) for v in r.group.values()])


async def stats_report(
    source: Any,
    by: str | list[str] | None = "node",
    *,
    since: float | None = None,
    until: float | None = None,
) -> list[StatsRow]:
    """Stats of the steps that ended between `since` and `until` (Unix seconds), from an App or
    a Store, grouped by `by`: ``node``, ``model``, ``version`` (prompt hash), ``app_version``,
    ``workflow``, ``step``, or a run label (``label:<key>`` or the bare key)."""
    until = until if until is not None else time.time()
    since = since or 0.0
    journals = await load_window(source, since, until)
    return compute_stats(journals, by, since, until)
