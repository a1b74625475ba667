"""The stuck/slow/ok rules on constructed runs (the real-process cases are in
tests/integration/test_observe_health.py)."""

from __future__ import annotations

from typing import Any

from tether.observe.health import Baselines, assess, render_verdict
from tether.store.base import RunRecord, StepRecord

NOW = 1_800_000_000.0


def running(progress: dict[str, Any] | None, *, lease_left: float = 5.0, **changes: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "id": "r1", "workflow": "titanium", "version": "1", "status": "running", "input": {},
        "output": None, "error": None, "labels": {}, "budget": None, "parent_id": None,
        "created_at": NOW - 100, "updated_at": NOW - 1, "started_at": NOW - 100,
        "finished_at": None, "wake_at": None, "waiting_for": None, "lease_owner": "w1",
        "lease_expires": NOW + lease_left, "fencing": 1, "recoveries": 0,
        "cancel_requested": False, "progress": progress,
    }
    fields.update(changes)
    return RunRecord(**fields)


def baselines(seconds: float = 2.0) -> Baselines:
    b = Baselines()
    for _ in range(10):
        b.add("researcher", "chat", seconds)
    return b


def step(name: str, seconds_ago: float) -> dict[str, Any]:
    return {"seq": 4, "name": name, "kind": "step", "node": "researcher",
            "started_at": NOW - seconds_ago, "timeout": None}


def test_within_the_usual_time_is_ok() -> None:
    verdict = assess(running(step("chat", 3.0)), [], baselines(), now=NOW)
    assert verdict.verdict == "ok"
    assert verdict.current_step == "researcher/chat #4"
    assert verdict.usual_p95 == 2.0


def test_past_k_times_p95_is_slow_and_k_is_configurable() -> None:
    verdict = assess(running(step("chat", 7.0)), [], baselines(), now=NOW)
    assert verdict.verdict == "slow"
    assert "3.5x its usual p95" in render_verdict(verdict)
    assert assess(running(step("chat", 7.0)), [], baselines(), now=NOW, k=5).verdict == "ok"


def test_lost_heartbeat_past_timeout_and_no_progress_are_stuck() -> None:
    lost = assess(running(step("chat", 1.0), lease_left=-3.0), [], baselines(), now=NOW)
    assert lost.verdict == "stuck"
    assert "heartbeat lost" in lost.reason
    assert "w1" in lost.reason
    timed = assess(running({**step("chat", 40.0), "timeout": 30.0}), [], None, now=NOW)
    assert timed.verdict == "stuck"
    assert "past its timeout" in timed.reason
    unknown = assess(running(step("chat", 4000.0)), [], None, now=NOW)
    assert unknown.verdict == "stuck"
    assert "no history" in unknown.reason
    idle = assess(
        running(None, started_at=NOW - 5000),
        [StepRecord("r1", 1, "chat", "step", "completed", started_at=NOW - 4000,
                    finished_at=NOW - 3990)],
        None,
        now=NOW,
    )
    assert idle.verdict == "stuck"
    assert "no step started or finished" in idle.reason


def test_waiting_runs_are_ok_and_say_for_what() -> None:
    waiting = running(None, status="waiting", waiting_for="approval", lease_expires=None)
    verdict = assess(waiting, [], None, now=NOW)
    assert verdict.verdict == "ok"
    assert "approval" in verdict.reason


def test_assess_runs_reads_history_once_for_running_runs(tmp_path: Any) -> None:
    import asyncio
    import time

    import tether
    from tether.observe.health import assess_runs

    app = tether.App(f"sqlite:///{tmp_path / 't.db'}")
    lost = running(step("chat", 1.0), lease_expires=time.time() - 5)
    verdicts = asyncio.run(assess_runs(app, [lost, running(None, status="succeeded")]))
    assert [v.verdict for v in verdicts] == ["stuck", "ok"]
