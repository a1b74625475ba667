"""Stuck vs slow with a real worker process: a step far past its usual p95 is `slow`; a worker
SIGSTOPped mid-step (heartbeat lost, lease expired, no takeover) is `stuck`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import tether
from tether.observe.health import Verdict, assess, latency_baselines, render_verdict

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP is POSIX")


@pytest.fixture
def worker(sqlite_url: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "TETHER_STORE": sqlite_url, "OBSERVE_TEST_LEASE": "1.0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.observe_worker_app"], cwd=ROOT, env=env
    )
    yield proc
    proc.send_signal(signal.SIGCONT)
    proc.kill()
    proc.wait(timeout=10)


def poll(check: Callable[[], Verdict | None], deadline: float, what: str) -> Verdict:
    end = time.monotonic() + deadline
    last: Verdict | None = None
    while time.monotonic() < end:
        last = check()
        if last is not None and last.verdict != "ok":
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what}: no verdict within {deadline}s (last: {last})")


def warm_up(app: tether.App) -> None:
    """Six quick runs of the step, so its usual p95 is known (~20 ms)."""
    handles = [app.start("probe", {"seconds": 0.02}) for _ in range(6)]
    for handle in handles:
        assert handle.result(timeout=30) == "done"


def verdict_of(app: tether.App, run_id: str, baselines: object) -> Verdict | None:
    info = app.get_run(run_id)
    if info.status != "running" or not info.progress:
        return None
    return assess(info, info.steps, baselines)  # type: ignore[arg-type]


def test_a_step_far_past_its_usual_p95_is_slow(
    sqlite_url: str, worker: subprocess.Popen[bytes]
) -> None:
    app = tether.App(sqlite_url)
    warm_up(app)
    baselines = asyncio.run(latency_baselines(app))
    usual = baselines.p95(None, "research")
    assert usual is not None
    assert usual < 0.5
    slow = app.start("probe", {"seconds": 60})
    verdict = poll(lambda: verdict_of(app, slow.id, baselines), 15, "slow step")
    assert verdict.verdict == "slow", render_verdict(verdict)
    assert verdict.current_step == "research #1"
    assert verdict.usual_p95 == pytest.approx(usual)
    assert verdict.time_in_step is not None
    assert verdict.time_in_step > 3 * usual
    assert "usual p95" in verdict.reason


def test_a_sigstopped_worker_mid_step_is_stuck(
    sqlite_url: str, worker: subprocess.Popen[bytes]
) -> None:
    app = tether.App(sqlite_url)
    warm_up(app)
    baselines = asyncio.run(latency_baselines(app))
    handle = app.start("probe", {"seconds": 60})
    # Mid-step: the heartbeat has recorded the step the run is in.
    end = time.monotonic() + 15
    while not app.get_run(handle.id).progress:
        assert time.monotonic() < end, "the worker never reported the step"
        time.sleep(0.05)
    worker.send_signal(signal.SIGSTOP)
    verdict = poll(
        lambda: (v if (v := verdict_of(app, handle.id, baselines)) and v.verdict == "stuck"
                 else None),
        15,
        "stopped worker",
    )
    assert verdict.verdict == "stuck"
    assert "heartbeat lost" in verdict.reason
    assert verdict.current_step == "research #1"
    assert app.get_run(handle.id).status == "running"  # not taken over: nobody else is there
