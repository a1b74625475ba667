"""The `tether` command as separate processes: the path a user or a script takes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    APP,
    Workers,
    client,
    read_ledger,
    tether_cli,
    wait_until,
    worker_pool,
)


@pytest.fixture
def workers(tmp_path: Path, sqlite_url: str) -> Iterator[Workers]:
    with worker_pool(tmp_path, sqlite_url) as pool:
        yield pool


def test_start_work_show_fork_from_the_command_line(workers: Workers) -> None:
    store = workers.store
    started = tether_cli(
        "start", "pipeline", "--app", APP, "--input", '{"steps": 3}', "--label", "team=ops",
        store=store,
    )
    assert started.returncode == 0, started.stderr
    run = started.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{24}", run)

    workers.start("cli-worker")
    app = client(store)
    wait_until(lambda: app.get_run(run).finished, timeout=20, what="the run to finish")

    shown = tether_cli("show", run, store=store)
    assert shown.returncode == 0, shown.stderr
    assert "pipeline@1" in shown.stdout
    assert "succeeded" in shown.stdout
    rows = [line.split() for line in shown.stdout.splitlines() if " work " in line]
    assert [row[:5] for row in rows] == [
        [str(seq), "work", "step", "completed", "1"] for seq in (1, 2, 3)
    ]

    listed = tether_cli("runs", "--json", "--status", "succeeded", store=store)
    assert listed.returncode == 0, listed.stderr
    [summary] = json.loads(listed.stdout)
    assert summary["id"] == run
    assert summary["labels"] == {"team": "ops"}

    forked = tether_cli("fork", run, "--from-step", "3", store=store)
    assert forked.returncode == 0, forked.stderr
    new = forked.stdout.strip()
    wait_until(lambda: app.get_run(new).finished, timeout=20, what="the fork to finish")
    detail = json.loads(tether_cli("show", new, "--json", store=store).stdout)
    assert detail["parent_id"] == run
    assert detail["status"] == "succeeded"
    # Steps 1-2 came from the source's journal; only step 3 ran in the fork.
    assert [s["output"]["index"] for s in detail["journal"]] == [0, 1, 2]

    # The worker logs one timestamped line per finished run.
    log = workers.log("cli-worker")
    assert re.search(rf"^\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}} INFO .*run {run} succeeded", log, re.M)


def test_cancel_from_another_process_stops_a_running_run(workers: Workers, tmp_path: Path) -> None:
    store = workers.store
    gate = tmp_path / "gate"
    app = client(store)
    run = app.start("pipeline", {"steps": 3, "gate": str(gate), "gate_at": 1}).id
    workers.start()
    wait_until(lambda: app.get_run(run).status == "running", timeout=20, what="the run to run")
    # While it runs, `show` says who holds it and which step it is in (from the heartbeat).
    shown = wait_until(
        lambda: (out := tether_cli("show", run, store=store).stdout) and "#2 block" in out and out,
        timeout=10,
        what="show to report the step in progress",
    )
    assert re.search(r"lease owner\s+w1:[0-9a-f]{8}(~live)? \(lease expires in", shown)
    cancelled = tether_cli("cancel", run, "--reason", "wrong customer", store=store)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancel requested; the worker holding it stops it" in cancelled.stdout
    gate.touch()
    wait_until(lambda: app.get_run(run).finished, timeout=20, what="the cancel to land")
    info = app.get_run(run)
    assert info.status == "cancelled"
    assert info.error is not None
    assert "wrong customer" in info.error["message"]
    # The step in flight could not journal its result once the cancel was requested, and the
    # step after it never started.
    assert 3 not in {s.seq for s in info.steps}
    assert f"{run}:3" not in read_ledger(workers.ledger)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "0123"], "no run with id '0123'"),
        (["start", "nope", "--app", APP], "unknown workflow 'nope' (known: approval, chaos"),
        (["start", "pipeline", "--app", APP, "--input", "{'steps': 3}"], "--input is not valid JSON"),
        (["worker", "--app", "tests.e2e.no_such_module:app"], "cannot import"),
    ],
)
def test_errors_exit_2_with_one_line(workers: Workers, args: list[str], message: str) -> None:
    client(workers.store).list_runs()  # the store exists; the run does not
    result = tether_cli(*args, store=workers.store)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


APP_MODULE = """
import tether

app = tether.App()  # the store comes from --store / $TETHER_STORE


@app.step
async def shout(word: str) -> str:
    return word.upper()


@app.workflow(name="hello", version="2")
async def hello(ctx: tether.Context, who: str) -> dict:
    return {"greeting": await shout(f"hello {who}")}
"""


def test_worker_loads_an_app_module_from_the_working_directory(
    workers: Workers, tmp_path: Path
) -> None:
    """What a user does: a module of their own, in their own directory, not on any path."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_flows.py").write_text(APP_MODULE)
    store = workers.store
    started = tether_cli(
        "start", "hello", "--app", "my_flows:app", "--input", '{"who": "acme"}',
        store=store, cwd=project,
    )
    assert started.returncode == 0, started.stderr
    run = started.stdout.strip()
    workers.start("mine", app="my_flows:app", cwd=project)
    app = client(store)
    wait_until(lambda: app.get_run(run).finished, timeout=20, what="the run to finish")
    info = app.get_run(run)
    assert info.status == "succeeded", info.error
    assert info.version == "2"
    assert info.output == {"greeting": "HELLO ACME"}


def test_an_app_that_names_its_store_in_code(workers: Workers, tmp_path: Path) -> None:
    """No --store anywhere: every command finds the store through --app."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_flows.py").write_text(
        APP_MODULE.replace("tether.App()", 'tether.App("sqlite:///flows.db")')
    )
    started = tether_cli(
        "start", "hello", "--app", "my_flows:app", "--input", '{"who": "x"}', store="", cwd=project
    )
    assert started.returncode == 0, started.stderr
    run = started.stdout.strip()
    workers.start("own-store", app="my_flows:app", cwd=project, store_option=False)
    app = client(f"sqlite:///{project / 'flows.db'}")
    wait_until(lambda: app.get_run(run).finished, timeout=20, what="the run to finish")
    shown = tether_cli("show", run, "--app", "my_flows:app", "--json", store="", cwd=project)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["output"] == {"greeting": "HELLO X"}


def test_workers_lists_the_live_workers_and_the_runs_they_hold(
    workers: Workers, tmp_path: Path
) -> None:
    store = workers.store
    gate = tmp_path / "gate"
    app = client(store)
    run = app.start("pipeline", {"steps": 3, "gate": str(gate), "gate_at": 1}).id
    proc = workers.start("lister")
    wait_until(lambda: app.get_run(run).status == "running", timeout=20, what="the run to run")
    listed = tether_cli("workers", "--json", store=store)
    assert listed.returncode == 0, listed.stderr
    (worker,) = json.loads(listed.stdout)["workers"]
    assert worker["name"] == "lister" and worker["pid"] == proc.pid
    assert worker["held_runs"] == [run] and not worker["late"]
    assert {"workflow": "pipeline", "version": "1"} in worker["workflows"]
    table = tether_cli("workers", store=store)
    assert table.returncode == 0 and "lister" in table.stdout and str(proc.pid) in table.stdout
    workers.kill("lister")
    # A killed worker leaves the list once it is seen dead; its run waits for a takeover.
    after = wait_until(
        lambda: (out := json.loads(tether_cli("workers", "--json", store=store).stdout))
        and not out["workers"] and out,
        timeout=30, what="the killed worker to leave the list")
    assert after["orphaned_runs"] == [run]
    gate.touch()
