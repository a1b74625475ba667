"""A run's trace for the run page: the span tree (workflow → node → model call / tool call /
wait) laid out on a time axis, and each model call as the conversation it was part of.

The spans come from `tether.observe.spans` (rebuilt from the journal). The axis can be shown
in real time or with the idle stretches collapsed: a two-minute approval wait would otherwise
squeeze every working span into a sliver. Stretches where nothing worked are *gaps*, labelled:
``wait`` (the run waited for a signal or timer), ``takeover`` (a worker was lost and another
took the run over) or ``queued`` (no worker had picked the run up yet).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

from tether.observe import names as n
from tether.observe.spans import Span, build_spans
from tether.store.base import RunRecord, StepRecord

COLLAPSE_SHARE = 0.04
"""A collapsed gap takes this share of the axis."""
MIN_GAP_SECONDS = 1.0
"""Shorter idle stretches are not worth collapsing or labelling."""


@dataclass(frozen=True)
class Gap:
    """A stretch of the run where no step was working."""

    kind: str
    """``wait``, ``takeover`` or ``queued``."""
    start: float
    end: float
    label: str


@dataclass
class Message:
    """One turn of a model call's conversation."""

    role: str
    """``system``, ``user``, ``assistant``, ``tool-call``, ``tool-result`` or ``retry``."""
    text: str
    name: str | None = None
    """The tool's name, for tool calls and results."""


@dataclass
class TraceRow:
    """One span on the page."""

    span_id: str
    parent_id: str | None
    depth: int
    name: str
    kind: str
    """``workflow``, ``agent``, ``chat``, ``tool``, ``wait`` or ``step``."""
    status: str
    seq: int | None
    start: float
    end: float | None
    duration: float | None
    tokens: int = 0
    cost: float = 0.0
    real: tuple[float, float] = (0.0, 0.0)
    """Left and width in percent of the axis, real time."""
    folded: tuple[float, float] = (0.0, 0.0)
    """Left and width in percent of the axis, gaps collapsed."""
    conversation: list[Message] = field(default_factory=list[Message])
    arguments: Any = None
    result: Any = None
    error: str | None = None


@dataclass
class Trace:
    """Everything the trace section shows."""

    rows: list[TraceRow]
    gaps: list[tuple[Gap, tuple[float, float], tuple[float, float]]]
    """Each gap with its real and collapsed positions."""
    total: float
    """Seconds from the run's creation to its end (or now)."""


def _kind(span: Span) -> str:
    op = span.attributes.get(n.OPERATION_NAME)
    if op == n.OP_WORKFLOW:
        return "workflow"
    if op == n.OP_AGENT:
        return "agent"
    if op == n.OP_CHAT:
        return "chat"
    if op == n.OP_TOOL:
        return "tool"
    if span.attributes.get("tether.wait.kind"):
        return "wait"
    return "step"


def _merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def find_gaps(run: RunRecord, steps: list[StepRecord], t0: float, t1: float) -> list[Gap]:
    """Idle stretches of at least `MIN_GAP_SECONDS` between `t0` and `t1`, labelled."""
    working = _merge([
        (s.started_at, s.finished_at if s.finished_at is not None else t1)
        for s in steps
        if s.kind not in ("signal", "sleep", "value") and s.started_at is not None
    ])
    waits = [
        (s.started_at, s.finished_at if s.finished_at is not None else t1, s.name)
        for s in steps
        if s.kind in ("signal", "sleep") and s.started_at is not None
    ]
    idle: list[tuple[float, float]] = []
    cursor = t0
    for start, end in working:
        if start > cursor:
            idle.append((cursor, start))
        cursor = max(cursor, end)
    if t1 > cursor:
        idle.append((cursor, t1))
    gaps: list[Gap] = []
    for start, end in idle:
        if end - start < MIN_GAP_SECONDS:
            continue
        covering = [w for w in waits if w[0] <= start + 0.5 and w[1] >= end - 0.5]
        if covering:
            what = covering[0][2]
            gaps.append(Gap("wait", start, end, f"waited for {what}"))
        elif start == t0 and not any(s.started_at is not None and s.started_at < end for s in steps):
            gaps.append(Gap("queued", start, end, "queued: no worker had taken the run"))
        elif run.recoveries > 0 and start > t0:
            gaps.append(Gap("takeover", start, end, "worker lost: no progress until another "
                            "worker took the run over"))
        elif start == t0:
            gaps.append(Gap("queued", start, end, "queued: no worker had taken the run"))
        else:
            gaps.append(Gap("takeover" if run.recoveries else "idle", start, end,
                            "nothing ran (between steps)"))
    return gaps


class _Axis:
    """Maps a time to a percentage of the axis, real or with gaps collapsed."""

    def __init__(self, t0: float, t1: float, gaps: list[Gap]) -> None:
        self.t0, self.t1 = t0, max(t1, t0 + 1e-6)
        self.gaps = gaps
        total = self.t1 - self.t0
        idle = sum(g.end - g.start for g in gaps)
        busy = max(total - idle, 1e-6)
        # Each collapsed gap is shown COLLAPSE_SHARE of the axis wide (or its real length, if
        # shorter); the busy time shares what is left.
        self.gap_width = [min(COLLAPSE_SHARE * 100, (g.end - g.start) / total * 100) for g in gaps]
        self.busy_scale = (100 - sum(self.gap_width)) / busy

    def real(self, t: float) -> float:
        return max(0.0, min(100.0, (t - self.t0) / (self.t1 - self.t0) * 100))

    def folded(self, t: float) -> float:
        position = 0.0
        cursor = self.t0
        for gap, width in zip(self.gaps, self.gap_width, strict=True):
            if t <= gap.start:
                break
            position += (gap.start - cursor) * self.busy_scale
            inside = min(t, gap.end) - gap.start
            position += width * inside / max(gap.end - gap.start, 1e-9)
            cursor = gap.end
            if t < gap.end:
                return min(100.0, position)
        position += max(0.0, t - cursor) * self.busy_scale
        return max(0.0, min(100.0, position))

    def place(self, start: float, end: float) -> tuple[tuple[float, float], tuple[float, float]]:
        real = (self.real(start), max(0.3, self.real(end) - self.real(start)))
        folded = (self.folded(start), max(0.3, self.folded(end) - self.folded(start)))
        return (round(real[0], 3), round(real[1], 3)), (round(folded[0], 3), round(folded[1], 3))


def build_trace(run: RunRecord, steps: list[StepRecord], now: float) -> Trace:
    """The run's trace: span rows in tree order, gaps, and both axes' positions."""
    spans = build_spans(run, steps)
    by_seq = {s.seq: s for s in steps}
    t0 = run.created_at
    t1 = run.finished_at if run.finished_at is not None else now
    gaps = find_gaps(run, steps, t0, t1)
    axis = _Axis(t0, t1, gaps)
    children: dict[str | None, list[Span]] = {}
    for span in spans:
        children.setdefault(span.parent_id, []).append(span)
    rows: list[TraceRow] = []

    def walk(span: Span, depth: int) -> None:
        attrs = span.attributes
        end = span.end if span.end is not None else t1
        real, folded = axis.place(span.start, end)
        kind = _kind(span)
        row = TraceRow(
            span_id=span.span_id, parent_id=span.parent_id, depth=depth, name=span.name,
            kind=kind, status=span.status if span.finished else "open", seq=span.seq,
            start=span.start - t0, end=None if span.end is None else span.end - t0,
            duration=span.duration,
            tokens=int(attrs.get(n.INPUT_TOKENS, 0)) + int(attrs.get(n.OUTPUT_TOKENS, 0)),
            cost=float(attrs.get(n.COST_USD, 0.0)), real=real, folded=folded,
            error=span.status_message,
        )
        rec = by_seq.get(span.seq) if span.seq is not None else None
        if rec is not None:
            if kind == "chat":
                row.conversation = conversation(steps, rec)
            elif kind == "tool" or kind == "step" or kind == "wait":
                row.arguments, row.result = rec.input, rec.output
        rows.append(row)
        for child in sorted(children.get(span.span_id, []), key=lambda s: (s.start, s.seq or 0)):
            walk(child, depth + 1)

    for root in children.get(None, []):
        walk(root, 0)
    placed = [(g, *axis.place(g.start, g.end)) for g in gaps]
    return Trace(rows=rows, gaps=placed, total=t1 - t0)


# --- a model call as a conversation ------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        items = cast(list[Any], value)
        return "\n".join(_text(item) for item in items)
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _request_messages(request: Any) -> list[Message]:
    """The turns of one pydantic-ai ``ModelRequest`` (as the journal stores it)."""
    if not isinstance(request, dict):
        return [Message("user", _text(request))] if request is not None else []
    request = cast(dict[str, Any], request)
    out: list[Message] = []
    if request.get("instructions"):
        out.append(Message("system", _text(request["instructions"])))
    for part in cast(list[Any], request.get("parts") or []):
        if not isinstance(part, dict):
            continue
        part = cast(dict[str, Any], part)
        kind = part.get("part_kind")
        if kind == "system-prompt":
            out.append(Message("system", _text(part.get("content"))))
        elif kind == "user-prompt":
            out.append(Message("user", _text(part.get("content"))))
        elif kind == "tool-return":
            out.append(Message("tool-result", _text(part.get("content")), part.get("tool_name")))
        elif kind == "retry-prompt":
            out.append(Message("retry", _text(part.get("content")), part.get("tool_name")))
    return out


def _response_messages(response: Any) -> list[Message]:
    """The turns of one model response (text, tool calls)."""
    if not isinstance(response, dict):
        return [Message("assistant", _text(response))] if response is not None else []
    response = cast(dict[str, Any], response)
    out: list[Message] = []
    for part in cast(list[Any], response.get("parts") or []):
        if not isinstance(part, dict):
            continue
        part = cast(dict[str, Any], part)
        kind = part.get("part_kind")
        if kind == "text":
            out.append(Message("assistant", _text(part.get("content"))))
        elif kind == "tool-call":
            args = part.get("args")
            if isinstance(args, str):
                try:
                    args = json.loads(args)
                except ValueError:
                    pass
            out.append(Message("tool-call", _text(args), part.get("tool_name")))
        elif kind == "thinking":
            out.append(Message("thinking", _text(part.get("content"))))
    return out


def conversation(steps: list[StepRecord], call: StepRecord) -> list[Message]:
    """The conversation a model call saw and answered: the earlier model calls of its node
    (each journal entry keeps its new request and the response) and then this one."""
    node = (call.meta or {}).get(n.NODE)
    turns: list[Message] = []
    for rec in steps:
        if rec.seq > call.seq:
            break
        meta = rec.meta or {}
        if meta.get(n.OPERATION_NAME) != n.OP_CHAT or meta.get(n.NODE) != node:
            continue
        record_input = rec.input
        new = (
            cast(dict[str, Any], record_input).get("new")
            if isinstance(record_input, dict) else record_input
        )
        if isinstance(record_input, dict) and cast(dict[str, Any], record_input).get(
            "messages"
        ) == 1:
            turns = []  # a new conversation of the same node (a loop, another item)
        asked = _request_messages(new)
        if asked and asked[0].role == "system" and any(
            t.role == "system" and t.text == asked[0].text for t in turns
        ):
            asked = asked[1:]  # the same instructions go with every request: show them once
        turns.extend(asked)
        turns.extend(_response_messages(rec.output))
    return turns
