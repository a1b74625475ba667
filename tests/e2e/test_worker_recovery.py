"""A SIGKILLed worker's runs are resumed by a new worker process from the last completed step."""

from __future__ import annotations

import signal
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

    gate.touch()
    workers.start("second")
    wait_until(
        lambda: len(read_ledger(workers.ledger)[f"{run}:4"]) == 2,
        timeout=20,
        what="the second worker to resume step #4",
    )
    # How fast the takeover is belongs to bench/bench_failover.py, not to this test.
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


def test_a_paused_zombie_worker_cannot_write_after_takeover(
    workers: Workers, tmp_path: Path
) -> None:
    """SIGSTOP a worker inside step #2 past its lease; another worker takes the run over and
    enters step #2 itself, where it stays (its gate is closed). Then the zombie wakes up and
    finishes its step #2 while the run is still `running` under the new owner: only the
    fencing token can refuse the zombie's journal write. The journal must not show the
    zombie's outcome; once the new owner finishes, it holds the new owner's."""
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
        taken = app.get_run(run)
        assert (taken.status, taken.recoveries) == ("running", 1)
        assert taken.lease_owner is not None and taken.lease_owner.startswith("rescuer:")
        # Open the gate for the zombie only, then wake it: it completes step #2 at once and
        # tries to journal it while the rescuer is still inside the same step.
        Path(f"{gate}.{zombie.pid}").touch()
    finally:
        zombie.send_signal(signal.SIGCONT)

    def zombie_done() -> bool:
        # The zombie either drops the run (fenced off) or, if the fence is broken, writes
        # step #2 (or more) into the journal: stop waiting at whichever comes first.
        dropped = "lease lost" in workers.log("zombie")
        return dropped or any(s.seq >= 2 for s in app.get_run(run).steps)

    wait_until(zombie_done, timeout=20, what="the zombie to drop the run or write step #2")
    during = app.get_run(run)
    assert [(s.seq, s.status) for s in during.steps] == [(1, "completed")], (
        f"the zombie's late write reached the journal while the rescuer held the run: "
        f"{[(s.seq, s.status, s.output) for s in during.steps]}"
    )
    assert during.status == "running"
    assert during.lease_owner == taken.lease_owner
    assert "lease lost" in workers.log("zombie")
    # Dropped: the zombie did not go on to step #3.
    assert f"{run}:3" not in read_ledger(workers.ledger)
    assert zombie.poll() is None, "the zombie worker should carry on, not crash"

    gate.touch()
    wait_until(lambda: app.get_run(run).finished, timeout=20, what="the run to finish")
    info = app.get_run(run)
    assert info.status == "succeeded", info.error
    assert info.recoveries == 1
    # The zombie ran step #2 too, but only the rescuer's result is in the journal.
    assert info.steps[1].output["pid"] == rescuer.pid
    assert [e.pid for e in read_ledger(workers.ledger)[f"{run}:3"]] == [rescuer.pid]
    check_exactly_once(info, read_ledger(workers.ledger), {zombie.pid})
