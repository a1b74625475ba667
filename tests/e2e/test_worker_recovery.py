"""A SIGKILLed worker's runs are resumed by a new worker process from the last completed step."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    POISON_APP,
    Workers,
    check_exactly_once,
    client,
    read_ledger,
    wait_until,
    worker_pool,
)


@pytest.fixture
def workers(tmp_path: Path, store_url: str) -> Iterator[Workers]:
    # Every backend (PostgreSQL skips, saying how to enable it, until its store exists).
    with worker_pool(tmp_path, store_url) as pool:
        yield pool


def test_kill_mid_step_resumes_from_last_completed_step(workers: Workers, tmp_path: Path) -> None:
    app = client(workers.store)
    gate = tmp_path / "gate"
    run = app.start("pipeline", {"steps": 6, "gate": str(gate), "gate_at": 3}).id
    workers.start("first")

    # The worker is inside step #4 (the gate) once the ledger shows it started.
    wait_until(lambda: f"{run}:4" in read_ledger(workers.ledger), timeout=20, what="step #4")
    before = app.get_run(run)
    assert [s.seq for s in before.steps if s.status == "completed"] == [1, 2, 3]
    workers.kill("first")
    killed_at = time.monotonic()

    gate.touch()
    workers.start("second")
    wait_until(
        lambda: len(read_ledger(workers.ledger)[f"{run}:4"]) == 2,
        timeout=20,
        what="the second worker to resume step #4",
    )
    # The lease is 1 s; a new worker process starts in well under a second.
    resumed_after = time.monotonic() - killed_at
    print(f"resumed {resumed_after:.2f}s after the kill (lease 1.0s, including worker start)")
    assert resumed_after < 4.0
    wait_until(lambda: app.get_run(run).finished, timeout=20, what="the run to finish")

    info = app.get_run(run)
    assert info.status == "succeeded", info.error
    assert info.recoveries == 1
    ledger = read_ledger(workers.ledger)
    check_exactly_once(info, ledger, workers.killed)
    # Steps 1-3 were journaled by the first worker and not run again; only the in-flight
    # step #4 ran twice; 5 and 6 ran once, on the second worker.
    assert [len(ledger[f"{run}:{seq}"]) for seq in range(1, 7)] == [1, 1, 1, 2, 1, 1]
    second = workers.procs["second"].pid
    assert {e.pid for seq in (5, 6) for e in ledger[f"{run}:{seq}"]} == {second}


def test_durable_sleep_interrupted_by_kill_wakes_on_another_worker(workers: Workers) -> None:
    app = client(workers.store)
    run = app.start("napper", {"seconds": 2.0}).id
    workers.start("sleeper")
    wait_until(
        lambda: app.get_run(run).status == "waiting", timeout=20, what="the run to sleep"
    )
    workers.kill("sleeper")

    workers.start("waker")
    wait_until(lambda: app.get_run(run).finished, timeout=20, what="the run to wake and finish")
    info = app.get_run(run)
    assert info.status == "succeeded", info.error
    assert info.output["slept"] >= 2.0
    # The step before the sleep ran once, on the killed worker; the one after, on the waker.
    ledger = read_ledger(workers.ledger)
    check_exactly_once(info, ledger, workers.killed)
    assert [e.pid for e in ledger[f"{run}:2"]] == [workers.procs["sleeper"].pid]
    assert [e.pid for e in ledger[f"{run}:4"]] == [workers.procs["waker"].pid]


def test_a_crash_does_not_reset_the_attempt_count(workers: Workers) -> None:
    app = client(workers.store)
    run = app.start("unlucky", {"service": "crm"}).id
    workers.start("first")

    def retrying_after_two() -> bool:
        steps = app.get_run(run).steps
        return len(steps) == 2 and steps[1].status == "retrying" and steps[1].attempts == 2

    # Kill in the backoff after the second failed attempt (max_attempts=3).
    wait_until(retrying_after_two, timeout=20, what="two journaled failed attempts")
    workers.kill("first")
    workers.start("second")
    wait_until(lambda: app.get_run(run).finished, timeout=20, what="the run to fail")

    info = app.get_run(run)
    assert info.status == "failed"
    assert info.steps[1].status == "failed"
    assert info.steps[1].attempts == 3
    assert "crm is down" in (info.error or {}).get("message", "")
    # Two attempts on the first worker, exactly one more on the second: not three more.
    executions = read_ledger(workers.ledger)[f"{run}:2"]
    first, second = workers.procs["first"].pid, workers.procs["second"].pid
    assert [e.pid for e in executions] == [first, first, second]


def test_poison_run_fails_after_max_recoveries(workers: Workers) -> None:
    """A step that SIGKILLs its own worker must not crash-loop the fleet forever."""
    app = client(workers.store)
    run = app.start("poison", {}).id
    started = time.monotonic()
    victims: list[int] = []
    # max_recoveries=2 in the fixture: three workers die, the fourth fails the run.
    for attempt in range(6):
        proc = workers.start(f"p{attempt}", app=POISON_APP)
        wait_until(
            lambda proc=proc: proc.poll() is not None or app.get_run(run).finished,
            timeout=20,
            what=f"worker p{attempt} to die or the run to end",
        )
        if app.get_run(run).finished:
            break
        victims.append(proc.pid)
    info = app.get_run(run)
    assert info.status == "failed"
    assert info.error is not None
    assert info.error["type"] == "PoisonRun"
    assert "max_recoveries=2" in info.error["message"]
    assert len(victims) == 3
    ledger = read_ledger(workers.ledger)
    # The first step was journaled before the first crash and never ran again.
    assert len(ledger[f"{run}:1"]) == 1
    assert [e.pid for e in ledger[f"{run}:2"]] == victims
    # The worker that failed the run is still alive and well.
    assert workers.alive() == [f"p{len(victims)}"]
    assert time.monotonic() - started < 30


def test_a_paused_zombie_worker_cannot_write_after_takeover(
    workers: Workers, tmp_path: Path
) -> None:
    """SIGSTOP a worker mid-step past its lease: another worker takes the run over; when the
    zombie wakes up and finishes the step, its write is fenced off and it drops the run."""
    app = client(workers.store)
    gate = tmp_path / "gate"
    run = app.start("pipeline", {"steps": 3, "gate": str(gate), "gate_at": 1}).id
    zombie = workers.start("zombie")
    wait_until(lambda: f"{run}:2" in read_ledger(workers.ledger), timeout=20, what="step #2")
    zombie.send_signal(signal.SIGSTOP)
    try:
        rescuer = workers.start("rescuer")
        wait_until(
            lambda: len(read_ledger(workers.ledger)[f"{run}:2"]) == 2,
            timeout=20,
            what="the rescuer to take step #2 over",
        )
        gate.touch()
        wait_until(lambda: app.get_run(run).finished, timeout=20, what="the run to finish")
    finally:
        zombie.send_signal(signal.SIGCONT)
    wait_until(
        lambda: "lease lost" in workers.log("zombie"), timeout=20, what="the zombie to drop it"
    )
    info = app.get_run(run)
    assert info.status == "succeeded", info.error
    assert info.recoveries == 1
    # The zombie ran step #2 too, but only the rescuer's result is in the journal.
    assert info.steps[1].output["pid"] == rescuer.pid
    check_exactly_once(info, read_ledger(workers.ledger), {zombie.pid})
    assert zombie.poll() is None, "the zombie worker should carry on, not crash"
