"""The span tree of a run, derived from its journal.

Spans are not written on the hot path: the journal already holds every step's name, times,
attempts, usage, error and meta, so the tree is rebuilt from it whenever it is needed (an
export, `tether show`, the dashboard). Trace and span ids are hashes of the run id and the
sequence numbers, so a run keeps one trace across suspension, resumption and takeover by
another worker, and rebuilding the tree twice gives the same ids.

```
invoke_workflow {workflow}                 the run
├── invoke_agent {node}                    consecutive steps of one pipeline node
│   ├── chat {model}                       a model call
│   ├── execute_tool {tool}                a tool call
│   └── wait {signal}                      a human decision awaited inside the node
├── step {name}                            a plain step outside any node
└── wait {name}                            a signal wait or durable timer
```
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from tether.observe import names as n
from tether.store.base import FINISHED_STATUSES, RunRecord, StepRecord

SpanStatus = Literal["unset", "ok", "error"]

_FINISHED_STEP = frozenset({"completed", "failed"})


def trace_id(run_id: str) -> str:
    """The run's 128-bit trace id as 32 hex digits (the same on every worker)."""
    return hashlib.sha256(f"tether:trace:{run_id}".encode()).hexdigest()[:32]


def span_id(run_id: str, part: str) -> str:
    """A 64-bit span id (16 hex digits) for one part of a run: ``run``, ``step:3``…"""
    return hashlib.sha256(f"tether:span:{run_id}:{part}".encode()).hexdigest()[:16]


@dataclass(slots=True)
class Span:
    """One span of a run's trace."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start: float
    """Unix seconds."""
    end: float | None
    """``None`` while the span is still open (the step or node is not over)."""
    attributes: dict[str, Any] = field(default_factory=dict[str, Any])
    status: SpanStatus = "unset"
    status_message: str | None = None
    seq: int | None = None
    """The journal entry behind a step span."""

    @property
    def finished(self) -> bool:
        return self.end is not None

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


def build_spans(run: RunRecord, steps: list[StepRecord]) -> list[Span]:
    """The run's spans, root first, then in journal order (agent spans before their first
    child). Recorded ``now``/``uuid`` values are not spans."""
    tid = trace_id(run.id)
    root = _root_span(run, steps, tid)
    spans: list[Span] = [root]
    open_agents: dict[str, Span] = {}
    agent_ends: dict[str, float] = {}
    last_node: str | None = None
    run_over = run.status in FINISHED_STATUSES
    for rec in steps:
        if rec.kind == "value":
            continue
        meta = rec.meta or {}
        start = rec.started_at if rec.started_at is not None else run.created_at
        node = meta.get(n.NODE)
        if node is None and rec.kind == "signal" and last_node in open_agents:
            node = last_node  # a human decision awaited by a tool call of that node
        # A node's span closes when another node's step starts after the node's last step
        # ended (sequential pipelines, loops); interleaved steps (parallel) keep it open.
        for other, span in list(open_agents.items()):
            if other != node and agent_ends.get(other, float("inf")) <= start:
                span.end = agent_ends[other]
                del open_agents[other]
        parent = root
        if isinstance(node, str):
            agent = open_agents.get(node)
            if agent is None:
                agent = _agent_span(run, tid, root, node, rec.seq, start)
                open_agents[node] = agent
                spans.append(agent)
            parent = agent
            last_node = node
            _fold_into_agent(agent, rec)
            end = rec.finished_at if rec.status in _FINISHED_STEP else None
            agent_ends[node] = end if end is not None else float("inf")
        spans.append(_step_span(run, tid, parent, rec, start))
    for node, span in open_agents.items():
        end = agent_ends.get(node, float("inf"))
        if run_over and end != float("inf"):
            span.end = end
    return spans


def _root_span(run: RunRecord, steps: list[StepRecord], tid: str) -> Span:
    attributes: dict[str, Any] = {
        n.OPERATION_NAME: n.OP_WORKFLOW,
        n.RUN_ID: run.id,
        n.WORKFLOW: run.workflow,
        "tether.run.status": run.status,
        "tether.run.recoveries": run.recoveries,
    }
    if run.version is not None:
        attributes["tether.workflow.version"] = run.version
    if run.parent_id is not None:
        attributes["tether.run.parent_id"] = run.parent_id
    for key, value in sorted(run.labels.items()):
        attributes[f"tether.label.{key}"] = value
    _add_usage(attributes, _sum_usage(steps))
    span = Span(
        trace_id=tid,
        span_id=span_id(run.id, "run"),
        parent_id=None,
        name=n.SPAN_WORKFLOW.format(name=run.workflow),
        start=run.created_at,
        end=run.finished_at if run.status in FINISHED_STATUSES else None,
        attributes=attributes,
    )
    if run.status == "succeeded":
        span.status = "ok"
    elif run.status in ("failed", "refused"):
        span.status = "error"
        error = run.error or {}
        span.attributes[n.ERROR_TYPE] = str(error.get("type") or run.status)
        span.status_message = str(error.get("message") or run.status)[:500]
    return span


def _agent_span(run: RunRecord, tid: str, root: Span, node: str, seq: int, start: float) -> Span:
    return Span(
        trace_id=tid,
        span_id=span_id(run.id, f"agent:{node}:{seq}"),
        parent_id=root.span_id,
        name=n.SPAN_AGENT.format(name=node),
        start=start,
        end=None,
        attributes={
            n.OPERATION_NAME: n.OP_AGENT,
            n.AGENT_NAME: node,
            n.NODE: node,
            n.RUN_ID: run.id,
        },
    )


def _fold_into_agent(agent: Span, rec: StepRecord) -> None:
    attrs = agent.attributes
    usage = rec.usage or {}
    for key, attr in (
        ("input_tokens", n.INPUT_TOKENS),
        ("output_tokens", n.OUTPUT_TOKENS),
        ("llm_calls", "tether.llm_calls"),
        ("tool_calls", "tether.tool_calls"),
        ("unpriced_calls", n.UNPRICED),
    ):
        if usage.get(key):
            attrs[attr] = int(attrs.get(attr, 0)) + int(usage[key])
    if usage.get("cost_usd"):
        attrs[n.COST_USD] = float(attrs.get(n.COST_USD, 0.0)) + float(usage["cost_usd"])
    if rec.started_at is not None:
        agent.start = min(agent.start, rec.started_at)
    if rec.status == "failed":
        agent.status = "error"
        attrs[n.ERROR_TYPE] = str((rec.error or {}).get("type") or "StepFailed")


def _step_span(run: RunRecord, tid: str, parent: Span, rec: StepRecord, start: float) -> Span:
    meta = rec.meta or {}
    operation = meta.get(n.OPERATION_NAME)
    attributes: dict[str, Any] = {
        n.RUN_ID: run.id,
        "tether.step.seq": rec.seq,
        "tether.step.name": rec.name,
        "tether.step.kind": rec.kind,
        n.ATTEMPT: rec.attempts,
    }
    if operation == n.OP_CHAT:
        model = meta.get(n.REQUEST_MODEL) or meta.get(n.RESPONSE_MODEL) or rec.name
        name = n.SPAN_CHAT.format(model=model)
    elif operation == n.OP_TOOL:
        name = n.SPAN_TOOL.format(name=meta.get(n.TOOL_NAME) or rec.name)
    elif rec.kind in ("signal", "sleep"):
        name = n.SPAN_WAIT.format(name=rec.name)
        attributes["tether.wait.kind"] = rec.kind
        # A signal is sent by someone outside the run: a person approving, an operator.
        attributes[n.WAITING_FOR_HUMAN] = rec.kind == "signal"
    else:
        name = n.SPAN_STEP.format(name=rec.name)
    for key, value in meta.items():
        if isinstance(value, str | bool | int | float):
            attributes[key] = value
    _add_usage(attributes, rec.usage or {}, overwrite=False)
    span = Span(
        trace_id=tid,
        span_id=span_id(run.id, f"step:{rec.seq}"),
        parent_id=parent.span_id,
        name=name,
        start=start,
        end=rec.finished_at if rec.status in _FINISHED_STEP else None,
        attributes=attributes,
        seq=rec.seq,
    )
    if rec.status == "completed":
        span.status = "ok"
    elif rec.status == "failed":
        error = rec.error or {}
        span.status = "error"
        attributes[n.ERROR_TYPE] = str(error.get("type") or "Error")
        span.status_message = str(error.get("message") or "")[:500]
    return span


def _sum_usage(steps: list[StepRecord]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for rec in steps:
        for key, value in (rec.usage or {}).items():
            if isinstance(value, int | float):
                total[key] = total.get(key, 0) + value
    return total


def _add_usage(attrs: dict[str, Any], usage: dict[str, Any], *, overwrite: bool = True) -> None:
    pairs = (
        ("input_tokens", n.INPUT_TOKENS),
        ("output_tokens", n.OUTPUT_TOKENS),
        ("cost_usd", n.COST_USD),
        ("unpriced_calls", n.UNPRICED),
        ("llm_calls", "tether.llm_calls"),
        ("tool_calls", "tether.tool_calls"),
    )
    for key, attr in pairs:
        if usage.get(key) and (overwrite or attr not in attrs):
            attrs[attr] = usage[key]


def format_span_tree(spans: list[Span]) -> str:
    """The span tree as indented text (for `tether show`): duration, tokens, cost, errors."""
    children: dict[str | None, list[Span]] = {}
    for span in spans:
        children.setdefault(span.parent_id, []).append(span)
    lines: list[str] = []

    def walk(span: Span, depth: int) -> None:
        attrs = span.attributes
        parts = [f"{span.duration:.3f}s" if span.duration is not None else "open"]
        tokens = int(attrs.get(n.INPUT_TOKENS, 0)) + int(attrs.get(n.OUTPUT_TOKENS, 0))
        if tokens:
            parts.append(f"{tokens} tok")
        if attrs.get(n.COST_USD):
            parts.append(f"${float(attrs[n.COST_USD]):.6f}")
        if attrs.get(n.UNPRICED):
            parts.append(f"{attrs[n.UNPRICED]} unpriced")
        if int(attrs.get(n.ATTEMPT, 1)) > 1:
            parts.append(f"{attrs[n.ATTEMPT]} attempts")
        if span.status == "error":
            parts.append(f"error {attrs.get(n.ERROR_TYPE, '')}".rstrip())
        lines.append(f"{'  ' * depth}{span.name}  [{', '.join(parts)}]")
        for child in children.get(span.span_id, []):
            walk(child, depth + 1)

    for root in children.get(None, []):
        walk(root, 0)
    return "\n".join(lines)
