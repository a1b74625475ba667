"""A deploy of version 2 while version-1 runs wait, with real worker processes: the stranded
runs are flagged (worker log, `tether runs`, `tether show`) and `tether fork --version 2` moves
them onto the new code without executing their completed steps again."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Workers, client, read_ledger, tether_cli, wait_until, worker_pool

V1 = "tests.e2e.deploy_apps:v1"
V2 = "tests.e2e.deploy_apps:v2"


@pytest.fixture
def workers(tmp_path: Path, store_url: str) -> Iterator[Workers]:
    with worker_pool(tmp_path, store_url) as pool:
        yield pool


def health(store: str) -> dict[str, dict[str, str] | None]:
    listed = tether_cli("runs", "--json", store=store)
    assert listed.returncode == 0, listed.stderr
    return {run["id"]: run["health"] for run in json.loads(listed.stdout)}


def test_version_1_runs_left_by_a_deploy_are_flagged_and_fork_moves_them(
    workers: Workers,
) -> None:
    store = workers.store
    app = client(store)
    started = [
        tether_cli("start", "order", "--app", V1, "--input", json.dumps({"item": item}),
                   store=store)
        for item in ("lamp", "desk")
    ]
    assert [s.returncode for s in started] == [0, 0], [s.stderr for s in started]
    runs = [s.stdout.strip() for s in started]
    old = workers.start("old", app=V1)
    wait_until(lambda: all(app.get_run(r).status == "waiting" for r in runs), timeout=30,
               what="the version-1 runs to wait for their approval")
    # Served by a live worker: no flag.
    assert all(health(store)[r] is None for r in runs)

    # The deploy: the version-1 worker stops, a version-2 worker starts; the approvals arrive
    # for runs no worker will claim.
    old.send_signal(signal.SIGTERM)
    assert old.wait(timeout=30) == 0
    for run in runs:
        app.signal(run, "approval", {"ok": True})
    workers.start("new", app=V2)
    wait_until(lambda: "will not be served" in workers.log("new"), timeout=30,
               what="the version-2 worker to report the runs it will not serve")
    log = workers.log("new")
    assert "2 run(s) of order v1 (2 queued) will not be served: no live worker serves order v1" in log
    assert all(run in log for run in runs)

    flags = health(store)
    for run in runs:
        assert app.get_run(run).status == "queued"
        assert flags[run] is not None and flags[run]["verdict"] == "stuck", flags
        assert flags[run]["reason"] == (
            "no live worker serves order v1; live workers serve v2 — fork it with "
            f"`tether fork {run} --version 2` or start a v1 worker"
        )
    shown = json.loads(tether_cli("show", runs[0], "--json", store=store).stdout)
    assert shown["health"]["reason"] == flags[runs[0]]["reason"]

    forked = tether_cli("fork", runs[0], "--version", "2", store=store)
    assert forked.returncode == 0, forked.stderr
    assert forked.stderr == ""  # a live worker serves version 2: no warning
    moved = forked.stdout.strip()
    wait_until(lambda: app.get_run(moved).finished, timeout=30, what="the moved run to finish")
    info = app.get_run(moved)
    assert (info.status, info.version, info.parent_id) == ("succeeded", "2", runs[0])
    assert info.output == {
        "quote": {"item": "lamp", "price": 10},
        "decision": {"ok": True},
        "shipped": "lamp shipped by v2",
    }
    # The quote ran once, on the version-1 worker; only the shipping ran on version 2.
    ledger = read_ledger(workers.ledger)
    new_pid = workers.procs["new"].pid
    assert [(e.step, e.pid) for e in ledger[f"{runs[0]}:1"]] == [("quote", old.pid)]
    assert [(e.step, e.pid) for e in ledger[f"{moved}:3"]] == [("ship", new_pid)]
    assert f"{moved}:1" not in ledger
    source = app.get_run(runs[0])
    assert source.status == "cancelled"
    assert health(store)[runs[1]] is not None  # the other run is still flagged
