"""A node's time in an approval's context is working time: waits for signals and timers (an
earlier approval that took minutes) count neither in this run nor in the usual p95."""

from __future__ import annotations

import pytest

from tether.observe.names import NODE
from tether.store.base import StepRecord
from tether.trust.snapshot import node_elapsed


def step(seq: int, kind: str, start: float, end: float | None, node: str = "drafter") -> StepRecord:
    return StepRecord(run_id="r", seq=seq, name=f"s{seq}", kind=kind, status="completed",
                      started_at=start, finished_at=end, meta={NODE: node})


def test_an_earlier_approval_wait_is_not_node_time() -> None:
    journal = [
        step(1, "step", 100.0, 100.2),     # model call, 200 ms
        step(2, "signal", 100.2, 199.2),   # an approval: 99 s waiting for a human
        step(3, "step", 199.2, 199.302),   # tool call, 102 ms
        step(4, "step", 150.0, 151.0, node="other"),
    ]
    assert node_elapsed(journal, "drafter") == pytest.approx(0.302)


def test_overlapping_steps_count_once_and_an_open_step_runs_to_now() -> None:
    journal = [step(1, "step", 10.0, 12.0), step(2, "step", 11.0, 13.0), step(3, "sleep", 13.0, 60.0),
               step(4, "step", 60.0, None)]
    assert node_elapsed(journal, "drafter", now=61.5) == pytest.approx(3.0 + 1.5)
    assert node_elapsed(journal, "nobody") is None
