"""Workers SIGKILLed again and again (a rolling deploy, an OOM loop elsewhere) while runs make
progress: every run succeeds, none fails as a poison run, although many are taken over more
than `max_recoveries` times. A poison run is one that kills its workers at the same step
without progress (tests/integration/test_engine_leases.py), not one taken over often.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

import tether
from tests.e2e.harness import client, wait_until, worker_pool
from tests.e2e.lease_app import repeated_starts

APP = "tests.e2e.lease_app:app"
MAX_RECOVERIES = 2
"""Low, so that a short kill loop takes runs over more often than this."""


def _kill_loop(
    tmp_path: Path, store: str, *, runs: int, steps: int, kills: int,
    max_recoveries: int = MAX_RECOVERIES,
) -> None:
    app = client(store)
    rng = random.Random(kills)
    with worker_pool(tmp_path, store) as workers:
        # Ten runs per worker: every kill hits a third of the runs in flight.
        spread = ["--concurrency", str(runs // 3)]
        for _ in range(3):
            workers.start(app=APP, args=spread)
        handles = [app.start("effects", {"steps": steps, "pause": 0.1}) for _ in range(runs)]

        def holders() -> list[str]:
            running = app.list_runs(status="running", limit=runs)
            names = {(r.lease_owner or "").split(":")[0] for r in running}
            return sorted(names & set(workers.alive()))

        def all_held() -> bool:
            running = app.list_runs(status="running", limit=runs)
            alive = set(workers.alive())
            return all((r.lease_owner or "").split(":")[0] in alive for r in running)

        def all_finished() -> bool:
            return not app.list_runs(status="running", limit=1) and not app.list_runs(
                status="queued", limit=1
            )

        done = 0
        while done < kills:
            # Kill a worker that holds runs (one still starting up would hit nothing) at a
            # random moment while it executes them — not the instant it took them over: a
            # holder lost before it could journal anything is what a poison run looks like.
            wait_until(all_held, timeout=60, what="the killed worker's runs taken over")
            wait_until(
                lambda: holders() or all_finished(), timeout=60, what="a worker holding runs"
            )
            if all_finished():
                break
            time.sleep(rng.uniform(0.5, 1.0))  # the kill schedule itself, not a wait
            victims = holders()
            if not victims:
                continue
            workers.kill(rng.choice(victims))
            done += 1
            workers.start(app=APP, args=spread)
        outcomes: dict[str, str] = {}
        for handle in handles:
            try:
                handle.result(timeout=180)
                outcomes[handle.id] = "succeeded"
            except tether.RunFailed as exc:
                outcomes[handle.id] = f"{type(exc).__name__}: {exc}"
        recoveries = [app.get_run(h.id).recoveries for h in handles]
        killed = set(workers.killed)
        logs = {proc.pid: workers.log(name) for name, proc in workers.procs.items()}

    failed = {run_id: why for run_id, why in outcomes.items() if why != "succeeded"}
    assert failed == {}, f"progressing runs failed: {failed}"
    assert max(recoveries) > max_recoveries, (
        f"the kills never took a run over more than max_recoveries={max_recoveries} times "
        f"(recoveries: {sorted(recoveries)}); the test proves nothing"
    )
    # At-least-once, not more: a step body ran again only after its worker was killed, or lost
    # the run's lease (a worker starved of CPU past its lease, as on a loaded test machine).
    for key, pids in repeated_starts(tmp_path / "ledger.txt").items():
        run_id = key.split(":")[0]
        lost = {pid for pid, log in logs.items() if f"run {run_id}: lease lost" in log}
        assert set(pids[:-1]) <= killed | lost, f"step {key} ran again without a kill: {pids}"


def test_runs_progressing_through_repeated_worker_kills_all_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_E2E_LEASE", "1")
    monkeypatch.setenv("TETHER_E2E_MAX_RECOVERIES", str(MAX_RECOVERIES))
    _kill_loop(tmp_path, f"sqlite:///{tmp_path / 'tether.db'}", runs=30, steps=150, kills=8)


@pytest.mark.slow
def test_a_long_kill_loop_on_postgres_fails_no_progressing_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.pg import postgres_schema_url

    monkeypatch.setenv("TETHER_E2E_LEASE", "2")
    monkeypatch.setenv("TETHER_E2E_MAX_RECOVERIES", "5")  # the default
    with postgres_schema_url() as url:
        _kill_loop(tmp_path, url, runs=30, steps=400, kills=40, max_recoveries=5)
