"""`tether cancel RUN` from another process stops a run inside a long step of a `tether worker`
process: an async step is interrupted (its cleanup runs, it never completes), a thread step is
abandoned and its late result discarded. Runs on both backends."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Workers, client, tether_cli, wait_until, worker_pool

APP = "tests.e2e.cancel_app:app"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "markers"
    folder.mkdir()
    monkeypatch.setenv("TETHER_E2E_MARKERS", str(folder))  # inherited by worker processes
    return folder


@pytest.fixture
def workers(tmp_path: Path, store_url: str, markers: Path) -> Iterator[Workers]:
    with worker_pool(tmp_path, store_url) as pool:
        yield pool


def start(workflow: str, store: str) -> str:
    proc = tether_cli("start", workflow, "--app", APP, store=store)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_cancel_interrupts_an_async_step_in_a_worker_process(
    workers: Workers, markers: Path
) -> None:
    store = workers.store
    app = client(store)
    run_id = start("async_work", store)
    workers.start("w1", app=APP)
    wait_until(lambda: (markers / f"{run_id}.started").exists(), timeout=30,
               what="the step to start")
    cancel = tether_cli("cancel", run_id, store=store)
    assert cancel.returncode == 0, cancel.stderr
    # 15 s is far below the 60 s step and the 200 s heartbeat: only an interrupt noticed by
    # the cancel watch gets here.
    wait_until(lambda: app.get_run(run_id).status == "cancelled", timeout=15,
               what=f"run {run_id} to end cancelled")
    assert (markers / f"{run_id}.cleanup").exists()
    assert not (markers / f"{run_id}.completed").exists()
    info = app.get_run(run_id)
    assert info.steps == []
    assert info.error and info.error["type"] == "RunCancelled"
    assert info.error["interrupted"] == [{"seq": 1, "name": "long_async_step", "kind": "step"}]
    assert workers.alive() == ["w1"]  # the worker lives on


def test_cancel_abandons_a_thread_step_and_discards_its_late_result(
    workers: Workers, markers: Path
) -> None:
    store = workers.store
    app = client(store)
    run_id = start("thread_work", store)
    worker = workers.start("w1", app=APP)
    wait_until(lambda: (markers / f"{run_id}.started").exists(), timeout=30,
               what="the step to start")
    cancel = tether_cli("cancel", run_id, store=store)
    assert cancel.returncode == 0, cancel.stderr
    wait_until(lambda: app.get_run(run_id).status == "cancelled", timeout=15,
               what=f"run {run_id} to end cancelled while its thread still runs")
    assert not (markers / f"{run_id}.returned").exists()
    (markers / "release").write_text("")
    wait_until(lambda: (markers / f"{run_id}.returned").exists(), timeout=30,
               what="the abandoned thread to return")
    worker.send_signal(signal.SIGTERM)  # whatever the worker would still write, it has by exit
    assert worker.wait(timeout=30) == 0
    info = app.get_run(run_id)
    assert info.status == "cancelled"
    assert info.steps == []
    assert info.output is None
