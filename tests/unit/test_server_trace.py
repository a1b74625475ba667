"""The run page's trace model: gaps where nothing worked are found and labelled (a wait, a
takeover), and collapsing them gives the working spans the axis back."""

from __future__ import annotations

from typing import Any

from tether.observe import names as n
from tether.server.trace import build_trace, conversation
from tether.store.base import RunRecord, StepRecord


def run_record(recoveries: int = 0, finished: float | None = 100.0) -> RunRecord:
    return RunRecord(
        id="r1", workflow="outreach", version=None, status="succeeded", input={}, output=None,
        error=None, labels={}, budget=None, parent_id=None, created_at=0.0, updated_at=0.0,
        started_at=0.0, finished_at=finished, wake_at=None, waiting_for=None,
        lease_owner=None, lease_expires=None, fencing=1, recoveries=recoveries,
        cancel_requested=False,
    )


def step(seq: int, name: str, kind: str, start: float, end: float, **meta: Any) -> StepRecord:
    return StepRecord(run_id="r1", seq=seq, name=name, kind=kind, status="completed",
                      started_at=start, finished_at=end, meta=meta or None)


def test_an_approval_wait_is_a_labelled_gap_that_collapses() -> None:
    steps = [
        step(1, "draft", "step", 0.0, 0.3, **{n.NODE: "drafter"}),
        step(2, "approval:r1-2", "signal", 0.3, 99.3),
        step(3, "send_email", "step", 99.3, 100.0, **{n.NODE: "drafter"}),
    ]
    trace = build_trace(run_record(), steps, now=200.0)
    (gap, real, folded) = trace.gaps[0]
    assert len(trace.gaps) == 1
    assert gap.kind == "wait" and "approval:r1-2" in gap.label
    assert real[1] > 95 and folded[1] <= 4.01  # collapsed to a marker
    send = next(r for r in trace.rows if r.name == "step send_email")
    assert send.real[1] < 1 and send.folded[1] > 50  # the work gets the axis back
    kinds = [(r.depth, r.kind) for r in trace.rows]
    assert kinds[0] == (0, "workflow") and (1, "agent") in kinds and (2, "wait") in kinds  # awaited inside the node


def test_a_takeover_is_a_gap_of_its_own_kind() -> None:
    steps = [step(1, "fetch", "step", 0.0, 0.2), step(2, "write", "step", 30.0, 30.4)]
    trace = build_trace(run_record(recoveries=1, finished=30.4), steps, now=40.0)
    assert [g.kind for g, _, _ in trace.gaps] == ["takeover"]
    no_takeover = build_trace(run_record(recoveries=0, finished=30.4), steps, now=40.0)
    assert [g.kind for g, _, _ in no_takeover.gaps] != ["takeover"]


def test_a_model_call_reads_as_the_conversation_of_its_node() -> None:
    chat = {n.OPERATION_NAME: n.OP_CHAT, n.NODE: "researcher"}
    steps = [
        StepRecord(run_id="r1", seq=1, name="researcher.model", kind="step", status="completed",
                   started_at=0, finished_at=1, meta=chat,
                   input={"messages": 1, "new": {"instructions": "Research Acme.", "parts": [
                       {"part_kind": "user-prompt", "content": "Who is Acme?"}]}},
                   output={"parts": [{"part_kind": "tool-call", "tool_name": "lookup",
                                      "args": {"name": "Acme"}}]}),
        StepRecord(run_id="r1", seq=2, name="researcher.tool.lookup", kind="step",
                   status="completed", started_at=1, finished_at=2,
                   meta={n.OPERATION_NAME: n.OP_TOOL, n.NODE: "researcher"},
                   input={"name": "Acme"}, output={"employees": 120}),
        StepRecord(run_id="r1", seq=3, name="researcher.model", kind="step", status="completed",
                   started_at=2, finished_at=3, meta=chat,
                   input={"messages": 3, "new": {"instructions": "Research Acme.", "parts": [
                       {"part_kind": "tool-return", "tool_name": "lookup",
                        "content": {"employees": 120}}]}},
                   output={"parts": [{"part_kind": "text", "content": "Acme has 120 people."}]}),
    ]
    turns = conversation(steps, steps[2])
    assert [(t.role, t.name) for t in turns] == [
        ("system", None), ("user", None), ("tool-call", "lookup"), ("tool-result", "lookup"),
        ("assistant", None)]
    assert turns[-1].text == "Acme has 120 people."
    assert [t.role for t in conversation(steps, steps[0])] == ["system", "user", "tool-call"]


def test_a_chart_draws_each_series_and_flags_the_one_a_finding_is_about() -> None:
    from tether.server.charts import Series, bucket_edges, seconds_unit, svg_chart

    edges = bucket_edges(0.0, 3600.0, buckets=4)
    flagged = Series("drafter", [0.2, 0.25, None, 0.9], marked=["p95 latency rose 3.6x"])
    calm = Series("researcher", [0.1, 0.1, 0.12, 0.1])
    svg = str(svg_chart("latency p95", [flagged, calm], edges, unit=seconds_unit,
                        chart_id="chart-p95"))
    assert svg.count('class="line" data-series="drafter"') == 1
    assert svg.count('class="dot" data-series="drafter"') == 3  # the empty slice has no dot
    assert 'data-finding="drafter"' in svg and 'data-finding="researcher"' not in svg
    assert '<li data-legend="drafter">' in svg and "⚑ change" in svg
    assert "900 ms" in svg  # the y axis is labelled with the peak
