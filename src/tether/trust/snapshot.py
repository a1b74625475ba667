"""The context a reviewer gets with an approval request, so they do not start from scratch.

Taken once, when the request is created (inside the journaled gate step), and stored with it:

* ``steps`` — the run's journal so far: name, kind, status, attempts, duration, error;
  ``totals`` counts steps, retries and errors.
* ``node`` — how long this agent node has been working in this run, against the p95 of the
  same node's working time in recent finished runs of the workflow (``slow`` when above it);
  waits for signals and timers (an earlier approval) count in neither.
* ``spend`` — tokens, model calls and cost so far, and the run's budget.
* ``versions`` — the models requested and answered, and prompt hashes, per node.
* ``history`` — this agent / category: reviews, approval and edit rates, the last decisions.
"""

from __future__ import annotations

import time
from typing import Any

from tether.engine.context import Context
from tether.observe.names import AGENT_NAME, NODE, PROMPT_HASH, REQUEST_MODEL, RESPONSE_MODEL
from tether.observe.stats import percentile
from tether.store.base import StepRecord, Store
from tether.trust.evidence import category_stats

MAX_STEPS = 40
"""Journal entries kept in a snapshot (the latest ones); totals still count them all."""
P95_RUNS = 50
"""Recent finished runs of the workflow read to estimate a node's usual p95."""


def _node_of(step: StepRecord) -> str | None:
    meta = step.meta or {}
    node = meta.get(NODE) or meta.get(AGENT_NAME)
    return str(node) if node is not None else None


def _duration(step: StepRecord) -> float | None:
    if step.started_at is None or step.finished_at is None:
        return None
    return round(step.finished_at - step.started_at, 4)


WAIT_KINDS = ("signal", "sleep")
"""Journal entries that wait (for a human, a signal, a timer) rather than work."""


def node_elapsed(steps: list[StepRecord], node: str, *, now: float | None = None) -> float | None:
    """The node's *working* time in seconds: how long its steps ran (overlaps counted once),
    leaving out waits for signals and timers — an earlier approval that took a minute is not
    the node being slow. An unfinished step counts up to `now`, if given."""
    spans: list[tuple[float, float]] = []
    for step in steps:
        if _node_of(step) != node or step.started_at is None or step.kind in WAIT_KINDS:
            continue
        end = step.finished_at if step.finished_at is not None else now
        if end is None:
            end = step.started_at
        spans.append((step.started_at, max(step.started_at, end)))
    if not spans:
        return None
    total = 0.0
    current_start, current_end = sorted(spans)[0]
    for start, end in sorted(spans)[1:]:
        if start > current_end:
            total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    return total + current_end - current_start


async def usual_node_p95(
    store: Store, workflow: str, node: str, *, exclude_run: str
) -> tuple[float | None, int]:
    """p95 of the node's working time (`node_elapsed`) over recent succeeded runs of the workflow, and how many
    runs it is computed from."""
    samples: list[float] = []
    for run in await store.list_runs(status="succeeded", workflow=workflow, limit=P95_RUNS):
        if run.id == exclude_run:
            continue
        elapsed = node_elapsed(await store.load_steps(run.id), node)
        if elapsed is not None:
            samples.append(elapsed)
    return percentile(samples, 95), len(samples)


async def take_snapshot(
    ctx: Context, store: Store, *, agent: str, category: str, reason: str
) -> dict[str, Any]:
    """Everything in the module docstring, as JSON-compatible data."""
    now = time.time()
    journal = [ctx.journal[seq] for seq in sorted(ctx.journal)]
    steps = [
        {
            "seq": s.seq,
            "name": s.name,
            "kind": s.kind,
            "status": s.status,
            "attempts": s.attempts,
            "duration": _duration(s),
            "node": _node_of(s),
            "error": (s.error or {}).get("message") if s.error else None,
        }
        for s in journal
    ]
    retries = sum(max(0, s.attempts - 1) for s in journal if s.kind == "step")
    errors = sum(1 for s in journal if s.status == "failed" or s.error)
    elapsed = node_elapsed(journal, agent, now=now)
    p95, samples = await usual_node_p95(store, ctx.workflow, agent, exclude_run=ctx.run_id)
    spent = ctx.spent
    budget = ctx.budget
    versions: dict[tuple[Any, ...], dict[str, Any]] = {}
    for s in journal:
        meta = s.meta or {}
        if not any(k in meta for k in (REQUEST_MODEL, RESPONSE_MODEL, PROMPT_HASH)):
            continue
        entry = {
            "node": _node_of(s),
            "request_model": meta.get(REQUEST_MODEL),
            "response_model": meta.get(RESPONSE_MODEL),
            "prompt_hash": meta.get(PROMPT_HASH),
        }
        versions[tuple(entry.values())] = entry
    history = category_stats(
        agent, category, await store.list_trust_actions(agent=agent, category=category, limit=1000)
    )
    return {
        "reason": reason,
        "taken_at": now,
        "steps": steps[-MAX_STEPS:],
        "totals": {"steps": len(journal), "retries": retries, "errors": errors},
        "node": {
            "name": agent,
            "elapsed": None if elapsed is None else round(elapsed, 4),
            "usual_p95": None if p95 is None else round(p95, 4),
            "samples": samples,
            "slow": elapsed is not None and p95 is not None and elapsed > p95,
        },
        "spend": {
            "llm_calls": spent.llm_calls,
            "tool_calls": spent.tool_calls,
            "input_tokens": spent.input_tokens,
            "output_tokens": spent.output_tokens,
            "tokens": spent.tokens,
            "cost_usd": round(spent.cost_usd, 6),
            "unpriced_calls": spent.unpriced_calls,
            "budget": budget.to_dict() if budget is not None else None,
        },
        "versions": list(versions.values()),
        "history": history.to_dict(),
    }
