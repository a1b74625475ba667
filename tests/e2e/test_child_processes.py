"""A parent run killed while its children run on another worker process: no child is started
twice, and the parent resumes on a new worker with its children's results."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import check_exactly_once, client, read_ledger, wait_until, worker_pool

pytestmark = pytest.mark.timeout(180)

N = 5


def test_parent_killed_while_children_run(tmp_path: Path, store_url: str) -> None:
    parent_gate, kid_gate = tmp_path / "parent-gate", tmp_path / "kid-gate"
    with worker_pool(tmp_path, store_url) as workers:
        workers.start("parents", app="tests.e2e.child_app:parent_app")
        workers.start("kids", app="tests.e2e.child_app:kid_app")
        app = client(store_url)
        run = app.start("fanout", {"n": N, "parent_gate": str(parent_gate),
                                   "kid_gate": str(kid_gate)}).id
        kids = [f"{run}.{seq}" for seq in range(1, N + 1)]
        hold_key = f"{run}:{N + 1}"

        def all_inside() -> bool:
            ledger = read_ledger(workers.ledger)
            return hold_key in ledger and all(f"{k}:1" in ledger for k in kids)

        wait_until(all_inside, timeout=60, what="the parent in its step and every child running")
        workers.kill("parents")
        parent_gate.touch()
        workers.start("parents2", app="tests.e2e.child_app:parent_app")
        # The new parent worker takes the run over and re-runs the step it was in.
        wait_until(lambda: len(read_ledger(workers.ledger)[hold_key]) == 2, timeout=60,
                   what="the parent to resume on the new worker")
        kid_gate.touch()
        wait_until(lambda: app.get_run(run).finished, timeout=60, what="the parent to finish")
        info = app.get_run(run)
        ledger = read_ledger(workers.ledger)
        children = app.list_runs(workflow="kid", limit=100)
    assert info.status == "succeeded", info.error
    assert info.output == [i * 10 for i in range(N)]
    assert info.recoveries >= 1
    # One run per child (a parent that started its children again would add runs), each of
    # whose step ran once: the kids' worker was never killed.
    assert sorted(c.id for c in children) == sorted(kids)
    assert all(c.parent_id == run and c.status == "succeeded" for c in children)
    assert all(len(ledger[f"{k}:1"]) == 1 for k in kids), ledger
    check_exactly_once(info, ledger, workers.killed)
