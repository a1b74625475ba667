"""Who spent what: model-call cost by run labels, model, node…, and per node of one run.

Only leaf model calls are summed — journal entries whose ``gen_ai.operation.name`` is
``chat`` — so a node, a run and its child runs are never counted on top of the calls they
contain. Each call carries its own model, so a run that uses three models puts each call on
its model; and its run's labels (inherited by child runs), so spend lands on the owner.
Unpriced calls are counted apart, never as zero dollars.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tether.engine.ledger import LOST_SEND, OVERSHOOT
from tether.engine.records import RunInfo
from tether.observe import names as n
from tether.observe.window import (
    RunJournal,
    check_dimensions,
    dimension_value,
    display_names,
    is_model_call,
    load_window,
    parse_dimensions,
    store_of,
)
from tether.store.base import StepRecord


@dataclass(slots=True)
class CostRow:
    """Spend of one group of model calls."""

    group: dict[str, str | None]
    """The dimension values (``None``: the calls carry no such value)."""
    calls: int = 0
    """Model requests (a retried call counts each attempt that was sent)."""
    unpriced_calls: int = 0
    """Calls whose price is unknown: their cost is *not* in `cost_usd`."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    overshoot_usd: float = 0.0
    """Spend beyond the calls' reservations (included in `cost_usd`): responses larger than
    the worst case reserved against budgets and spend limits."""
    runs: int = 0
    price_sources: list[str] = field(default_factory=list[str])
    cut_calls: int = 0
    """Calls sent by workers that died or lost their run mid-call (a SIGKILL, a pause past the
    lease), never journaled and sent again: not in `calls` nor `cost_usd`. Known for runs with
    a budget or a spend limit only (`Store.cut_calls`)."""
    cut_usd: float = 0.0
    """The worst case of the `cut_calls` (what they were reserved at): what the provider may
    have billed on top of `cost_usd`."""
    lost_sends: int = 0
    """Calls of runs without a budget or spend limit that a lost worker was in at its last
    heartbeat (`LOST_SEND`): maybe sent and billed once more than `calls`, cost unknown."""

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.group,
            "calls": self.calls,
            "unpriced_calls": self.unpriced_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 10),
            "overshoot_usd": round(self.overshoot_usd, 10),
            "runs": self.runs,
            "price_sources": self.price_sources,
            "cut_calls": self.cut_calls,
            "cut_usd": round(self.cut_usd, 10),
            "lost_sends": self.lost_sends,
        }


async def cost_report(
    source: Any,
    by: str | list[str] | None = "team,model",
    *,
    since: float | None = None,
    until: float | None = None,
) -> list[CostRow]:
    """Spend of the model calls that ended in the window, grouped by `by` (label keys, or
    ``model``, ``provider``, ``node``, ``workflow``, ``version``…), most expensive first; and,
    apart, the calls cut by crashes that were sent in the window (`CostRow.cut_calls`), put on
    the group of the step that sent them again, and the calls a lost worker of a run without a
    budget may have sent (`CostRow.lost_sends`)."""
    dims = parse_dimensions(by, "team,model")
    until = until if until is not None else time.time()
    since = since or 0.0
    rows: dict[tuple[str | None, ...], CostRow] = {}
    run_sets: dict[tuple[str | None, ...], set[str]] = {}
    journals = await load_window(source, since, until)
    check_dimensions(dims, journals, default="team,model")

    def row_of(journal: RunJournal, rec: StepRecord) -> CostRow:
        key = tuple(dimension_value(d, journal, rec) for d in dims)
        row = rows.get(key)
        if row is None:
            row = rows[key] = CostRow(group=dict(zip(display_names(dims), key, strict=True)))
            run_sets[key] = set()
        run_sets[key].add(journal.run.id)
        return row

    cut = await store_of(source).cut_calls(since=since, until=until)
    cut_at = {(call.run_id, call.seq) for call in cut}
    for journal in journals:
        for rec in journal.leaf_steps(since, until):
            if not is_model_call(rec):
                continue
            row = row_of(journal, rec)
            if (rec.meta or {}).get(LOST_SEND) and (journal.run.id, rec.seq) not in cut_at:
                row.lost_sends += 1
            usage = rec.usage or {}
            row.calls += int(usage.get("llm_calls") or 1)
            row.unpriced_calls += int(usage.get("unpriced_calls") or 0)
            row.input_tokens += int(usage.get("input_tokens") or 0)
            row.output_tokens += int(usage.get("output_tokens") or 0)
            row.cost_usd += float(usage.get("cost_usd") or 0.0)
            over: dict[str, Any] = (rec.meta or {}).get(OVERSHOOT) or {}
            row.overshoot_usd += float(over.get("cost_usd") or 0.0)
            source_name = (rec.meta or {}).get(n.PRICE_SOURCE)
            if source_name and source_name not in row.price_sources:
                row.price_sources.append(str(source_name))
    by_run = {journal.run.id: journal for journal in journals}
    for call in cut:
        journal = by_run.get(call.run_id)
        if journal is None:  # a run pruned meanwhile (its holds go with it)
            continue
        # The cut call's model, node…: those of the step at its position, sent again; a
        # position never journaled (the run ended first) has its run's labels only.
        rec = next((r for r in journal.steps if r.seq == call.seq), None) or StepRecord(
            run_id=call.run_id, seq=call.seq, name="", kind="step", status="failed")
        row = row_of(journal, rec)
        row.cut_calls += int(call.usage.get("llm_calls") or 1)
        row.cut_usd += float(call.usage.get("cost_usd") or 0.0)
    for key, row in rows.items():
        row.runs = len(run_sets[key])
    return sorted(rows.values(), key=lambda r: (-r.cost_usd, -r.calls, str(r.group)))


@dataclass(slots=True)
class NodeSummary:
    """Cost and latency of one pipeline node within one run."""

    node: str
    models: list[str] = field(default_factory=list[str])
    llm_calls: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    steps: int = 0
    retries: int = 0
    """Steps that needed more than one attempt."""
    failures: int = 0
    busy_seconds: float = 0.0
    """Sum of the node's step durations."""
    wall_seconds: float = 0.0
    """From the node's first step start to its last step end."""

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def node_summary(run: RunInfo) -> list[NodeSummary]:
    """Per-node cost and latency of one run, in the order the nodes first ran (steps without
    a node are gathered under ``-``). What the Titanium demo prints."""
    rows: dict[str, NodeSummary] = {}
    bounds: dict[str, tuple[float, float]] = {}
    for step in run.steps:
        if step.kind != "step":
            continue
        node = str(step.meta.get(n.NODE) or "-")
        row = rows.setdefault(node, NodeSummary(node=node))
        row.steps += 1
        usage = step.usage
        row.llm_calls += usage.llm_calls
        row.tool_calls += usage.tool_calls
        row.input_tokens += usage.input_tokens
        row.output_tokens += usage.output_tokens
        row.cost_usd += usage.cost_usd
        row.unpriced_calls += usage.unpriced_calls
        row.retries += 1 if step.attempts > 1 else 0
        row.failures += 1 if step.status == "failed" else 0
        model = step.meta.get(n.RESPONSE_MODEL) or step.meta.get(n.REQUEST_MODEL)
        if model and str(model) not in row.models:
            row.models.append(str(model))
        if step.started_at is not None and step.finished_at is not None:
            start, end = step.started_at.timestamp(), step.finished_at.timestamp()
            row.busy_seconds += end - start
            lo, hi = bounds.get(node, (start, end))
            bounds[node] = (min(lo, start), max(hi, end))
    for node, (lo, hi) in bounds.items():
        rows[node].wall_seconds = hi - lo
    return list(rows.values())


def format_node_summary(rows: list[NodeSummary]) -> str:
    """A plain-text table of `node_summary` rows (unpriced calls shown, never as $0)."""
    header = f"{'node':<16} {'calls':>5} {'tools':>5} {'tokens':>8} {'cost USD':>11} {'seconds':>8}  models"
    lines = [header, "-" * len(header)]
    total = 0.0
    for r in rows:
        cost = f"{r.cost_usd:.6f}" + ("*" if r.unpriced_calls else "")
        lines.append(
            f"{r.node:<16} {r.llm_calls:>5} {r.tool_calls:>5} "
            f"{r.input_tokens + r.output_tokens:>8} {cost:>11} {r.wall_seconds:>8.2f}  "
            + ", ".join(r.models)
        )
        total += r.cost_usd
    unpriced = sum(r.unpriced_calls for r in rows)
    lines.append(f"{'total':<16} {'':>5} {'':>5} {'':>8} {total:>11.6f}")
    if unpriced:
        lines.append(f"* {unpriced} model call(s) unpriced (unknown model): not included above")
    return "\n".join(lines)
