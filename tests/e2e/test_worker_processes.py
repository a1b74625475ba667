"""Worker processes: signals from other processes, graceful shutdown (SIGTERM/SIGINT, grace
period, second signal), sharing one SQLite file, concurrency, surviving failing workflows and
sys.exit(), and the blocked-event-loop warning. The signal and graceful-stop checks run on
both backends."""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    Workers,
    check_exactly_once,
    client,
    describe,
    read_ledger,
    tether_cli,
    wait_until,
    worker_pool,
)


@pytest.fixture
def workers(tmp_path: Path, sqlite_url: str) -> Iterator[Workers]:
    with worker_pool(tmp_path, sqlite_url) as pool:
        yield pool


@pytest.fixture
def any_workers(tmp_path: Path, store_url: str) -> Iterator[Workers]:
    """Worker processes on each backend: SQLite, then PostgreSQL."""
    with worker_pool(tmp_path, store_url) as pool:
        yield pool


def test_signal_from_another_process_resumes_waiting_runs(any_workers: Workers) -> None:
    store = any_workers.store
    started = [
        tether_cli("start", "approval", "--input", json.dumps({"who": f"c{i}"}),
                   "--label", f"n={i}", store=store)
        for i in range(3)
    ]
    for proc in started:
        assert proc.returncode == 0, proc.stderr
    runs = [proc.stdout.strip() for proc in started]
    app = client(store)
    any_workers.start("w1")
    wait_until(
        lambda: all(app.get_run(r).status == "waiting" for r in runs),
        timeout=20,
        what="every run to wait for its approval",
    )
    assert app.get_run(runs[0]).waiting_for == "approval"

    # Each signal comes from its own `tether signal` process.
    for i, run in enumerate(runs):
        sent = tether_cli("signal", run, "approval", "--data", json.dumps({"ok": i}), store=store)
        assert sent.returncode == 0, sent.stderr
        assert f"delivered to run {run}" in sent.stdout
    wait_until(
        lambda: all(app.get_run(r).finished for r in runs), timeout=20, what="runs to resume"
    )
    for i, run in enumerate(runs):
        info = app.get_run(run)
        assert info.status == "succeeded", info.error
        assert info.output == {"who": f"c{i}", "decision": {"ok": i}}
        assert info.labels == {"n": str(i)}
        check_exactly_once(info, read_ledger(any_workers.ledger), set())


def test_signal_sent_before_the_worker_runs_is_kept(any_workers: Workers) -> None:
    store = any_workers.store
    run = tether_cli("start", "approval", "--input", '{"who": "early"}', store=store).stdout.strip()
    sent = tether_cli("signal", run, "approval", "--data", '"yes"', store=store)
    assert sent.returncode == 0, sent.stderr
    any_workers.start("late")
    app = client(store)
    wait_until(lambda: app.get_run(run).finished, timeout=20, what="the run to finish")
    assert app.get_run(run).output == {"who": "early", "decision": "yes"}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_lets_in_flight_runs_finish(any_workers: Workers, signum: signal.Signals) -> None:
    workers = any_workers
    app = client(workers.store)
    runs = [app.start("pipeline", {"steps": 3, "pause": 0.5}).id for _ in range(3)]
    proc = workers.start("graceful")
    wait_until(
        lambda: all(f"{r}:1" in read_ledger(workers.ledger) for r in runs),
        timeout=20,
        what="every run to be under way",
    )
    proc.send_signal(signum)
    assert proc.wait(timeout=15) == 0
    for run in runs:
        info = app.get_run(run)
        assert info.status == "succeeded", describe(app, runs)
        check_exactly_once(info, read_ledger(workers.ledger), set())
    log = workers.log("graceful")
    assert f"{signum.name} received" in log
    assert "stopped" in log


@pytest.mark.parametrize("sync_gate", [False, True], ids=["async-step", "thread-step"])
def test_sigterm_hands_back_runs_that_outlive_the_grace_period(
    workers: Workers, tmp_path: Path, sync_gate: bool
) -> None:
    app = client(workers.store)
    gate = tmp_path / "gate"
    run = app.start(
        "pipeline", {"steps": 3, "gate": str(gate), "gate_at": 1, "sync_gate": sync_gate}
    ).id
    proc = workers.start("impatient", args=["--grace", "0.5"])
    wait_until(lambda: f"{run}:2" in read_ledger(workers.ledger), timeout=20, what="step #2")
    proc.send_signal(signal.SIGTERM)
    # The gate never opens: the worker exits only because the grace period ran out.
    assert proc.wait(timeout=15) == 0
    assert "1 run(s) in flight get 0.5s to finish" in workers.log("impatient")
    info = app.get_run(run)
    # Handed back, not failed and not left to a lease expiry.
    assert info.status == "queued", describe(app, [run])
    assert info.lease_owner is None

    gate.touch()
    workers.start("next")
    wait_until(lambda: app.get_run(run).finished, timeout=20, what="the run to finish")
    info = app.get_run(run)
    assert info.status == "succeeded", info.error
    assert info.recoveries == 0  # a release is not a crash
    check_exactly_once(info, read_ledger(workers.ledger), {proc.pid})


def test_two_workers_share_one_sqlite_file(workers: Workers) -> None:
    app = client(workers.store)
    runs = [app.start("chaos", {"steps": 4, "max_pause": 0.05}).id for _ in range(24)]
    one = workers.start("one", args=["--concurrency", "4"])
    two = workers.start("two", args=["--concurrency", "4"])
    wait_until(
        lambda: all(app.get_run(r).finished for r in runs), timeout=30, what="all runs"
    )
    ledger = read_ledger(workers.ledger)
    for run in runs:
        info = app.get_run(run)
        assert info.status == "succeeded", info.error
        assert info.recoveries == 0
        check_exactly_once(info, ledger, set())
    # No step anywhere ran twice, and both processes did a share of the work.
    assert all(len(executions) == 1 for executions in ledger.values())
    by_pid = Counter(e.pid for executions in ledger.values() for e in executions)
    assert set(by_pid) == {one.pid, two.pid}, by_pid


def test_worker_survives_failing_workflows(workers: Workers) -> None:
    app = client(workers.store)
    bad = [app.start("failing", {"message": f"bad input {i}"}).id for i in range(3)]
    unknown = app.start("no_such_workflow", {}).id
    exits = [app.start("exiting", {"where": where}).id for where in ("step", "workflow")]
    proc = workers.start("sturdy")
    wait_until(
        lambda: all(app.get_run(r).finished for r in bad + exits), timeout=20, what="failures"
    )
    good = app.start("pipeline", {"steps": 2}).id
    wait_until(lambda: app.get_run(good).finished, timeout=20, what="the good run")

    assert proc.poll() is None, "the worker died"
    assert app.get_run(good).status == "succeeded"
    for i, run in enumerate(bad):
        info = app.get_run(run)
        assert info.status == "failed"
        assert info.error is not None
        assert f"bad input {i}" in info.error["message"]
        assert info.steps[-1].status == "failed"
    # sys.exit() in a step or in workflow code fails that run, not the worker.
    in_step, in_workflow = (app.get_run(r) for r in exits)
    assert in_step.status == "failed"
    assert "SystemExit: 3" in (in_step.error or {})["message"]
    assert in_workflow.status == "failed"
    assert (in_workflow.error or {})["type"] == "SystemExit"
    # A run of a workflow this worker does not have is left for a worker that has it.
    assert app.get_run(unknown).status == "queued"
    log = workers.log("sturdy")
    line = next(line for line in log.splitlines() if f"run {bad[0]} failed" in line)
    assert "WARNING" in line
    assert "bad input 0" in line


def test_second_sigterm_exits_at_once(workers: Workers, tmp_path: Path) -> None:
    app = client(workers.store)
    run = app.start("pipeline", {"steps": 2, "gate": str(tmp_path / "never"), "gate_at": 0}).id
    proc = workers.start("hasty")
    wait_until(lambda: f"{run}:1" in read_ledger(workers.ledger), timeout=20, what="step #1")
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "SIGTERM received" in workers.log("hasty"), timeout=10, what="the log")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 130
    # The run was not handed back: its lease runs out and another worker takes it over.
    assert app.get_run(run).status == "running"


def test_signal_sent_while_no_worker_is_alive(any_workers: Workers) -> None:
    """The waiting run's worker is killed; the approval arrives from another process while no
    worker runs; a new worker finishes the run with it."""
    store = any_workers.store
    app = client(store)
    run = app.start("approval", {"who": "acme"}).id
    any_workers.start("first")
    wait_until(lambda: app.get_run(run).status == "waiting", timeout=20, what="the wait")
    any_workers.kill("first")
    sent = tether_cli("signal", run, "approval", "--data", '{"approved": true}', store=store)
    assert sent.returncode == 0, sent.stderr
    assert app.get_run(run).status == "queued"
    any_workers.start("second")
    wait_until(lambda: app.get_run(run).finished, timeout=20, what="the run to finish")
    info = app.get_run(run)
    assert info.output == {"who": "acme", "decision": {"approved": True}}
    check_exactly_once(info, read_ledger(any_workers.ledger), any_workers.killed)


def test_concurrency_limits_runs_in_flight(workers: Workers) -> None:
    app = client(workers.store)
    runs = [app.start("pipeline", {"steps": 3, "pause": 0.05}).id for _ in range(4)]
    workers.start("single", args=["--concurrency", "1"])
    wait_until(lambda: all(app.get_run(r).finished for r in runs), timeout=20, what="all runs")
    # One run at a time: each run's steps form one unbroken block in execution order.
    order = [line.split()[0].split(":")[0] for line in workers.ledger.read_text().splitlines()]
    blocks = [run for i, run in enumerate(order) if i == 0 or order[i - 1] != run]
    assert sorted(blocks) == sorted(runs), order


def test_worker_warns_when_a_step_blocks_the_event_loop(workers: Workers) -> None:
    app = client(workers.store)
    run = app.start("hogging", {"seconds": 0.6}).id  # more than a third of the 1 s lease
    workers.start("watched")
    wait_until(lambda: app.get_run(run).finished, timeout=20, what="the run to finish")
    wait_until(
        lambda: "event loop was blocked" in workers.log("watched"),
        timeout=5,
        what="the worker to warn about the blocked loop",
    )
