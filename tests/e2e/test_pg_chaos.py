"""Chaos against PostgreSQL with real worker processes: about every second SIGKILL a random
worker that is executing steps, and start a replacement. At the end every run succeeded with one journal entry per
step, no run is stranded, every step's body ran at least once, and re-executions are only
those the guarantee allows: a step runs again only if the worker running it was killed (or
lost that run's lease) before its result was journaled — never a journaled step, and never
more than `concurrency` steps per killed worker.

The CI version is small (60 runs x 10 steps); ``-m slow`` runs the full 300 x 10.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
from tests.e2e.pg_procs import prepare, query, wait_until, workers
from tests.pg import postgres_schema_url

pytestmark = pytest.mark.timeout(300)
CONCURRENCY = 8


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_schema_url() as url:
        prepare(url)
        yield url


def chaos(url: str, log_dir: Path, *, runs: int, steps: int, target_kills: int) -> None:
    rng = random.Random(7)
    client = tether.App(url)
    try:
        ids = [client.start("chain", {"steps": steps}).id for _ in range(runs)]
        kills = 0
        killed: set[int] = set()
        with workers(
            url,
            log_dir,
            PG_APP_LEASE="1.5",
            PG_APP_STEP_SECONDS="0.25",
            PG_APP_CONCURRENCY=str(CONCURRENCY),
        ) as pool:
            for _ in range(3):
                pool.start()
            def working() -> list[subprocess.Popen[bytes]]:
                # Kill only workers that are executing steps: on a loaded machine a new
                # worker process needs seconds to import, and killing it then tests nothing.
                busy = {r[0] for r in query(url, "SELECT DISTINCT worker FROM executions")}
                return [p for p in pool.alive() if p.pid in busy]

            def unfinished() -> int:
                return query(
                    url, "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')"
                )[0][0]

            while kills < target_kills and unfinished():
                time.sleep(rng.uniform(0.7, 1.3))  # the kill schedule, not a wait for a state
                candidates = working()
                if not candidates:
                    continue
                victim = rng.choice(candidates)
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait()
                killed.add(victim.pid)
                kills += 1
                pool.start()
            unfinished_at_end_of_chaos = unfinished()

            def all_finished() -> bool:
                rows = query(url, "SELECT count(*) FROM runs WHERE status IN ('succeeded', 'failed', 'refused', 'cancelled')")
                return rows[0][0] == runs

            wait_until(all_finished, 90, f"all {runs} runs to finish after {kills} kills")
        logs = {proc: pool.log(proc) for proc in pool.procs}

        statuses = query(url, "SELECT status, count(*) FROM runs GROUP BY status")
        assert dict(statuses) == {"succeeded": runs}, statuses
        outputs = {client.get_run(i).output for i in ids[:5]}
        assert outputs == {sum(range(steps))}
        # The journal: exactly `steps` entries per run, numbered 1..steps, all completed.
        journal = query(
            url,
            "SELECT run_id, count(*), min(seq), max(seq), bool_and(status = 'completed') "
            "FROM steps GROUP BY run_id",
        )
        assert len(journal) == runs
        assert all(row[1:] == (steps, 1, steps, True) for row in journal), journal[:3]

        # Every execution of every step body, in the order they began (no uniqueness).
        rows = query(url, "SELECT key, run_id, worker, journaled FROM executions ORDER BY id")
        assert not [r for r in rows if r[3]], (
            "a step ran again after its result was journaled",
            [r for r in rows if r[3]][:5],
        )
        by_key: dict[str, list[tuple[str, int]]] = {}
        for key, run_id, worker, _ in rows:
            by_key.setdefault(key, []).append((run_id, worker))
        assert len(by_key) == runs * steps, "a journaled step has no execution"
        # Every execution but the last of its key was cut short: its worker was SIGKILLed, or
        # it lost that run's lease (a worker starved past its lease on this busy machine is
        # a zombie too, and says so in its log).
        lost = {proc.pid: proc_log for proc, proc_log in logs.items()}
        superseded: dict[int, int] = {}
        for key, executions in by_key.items():
            for run_id, worker in executions[:-1]:
                dropped = f"run {run_id}: lease lost" in lost.get(worker, "")
                assert worker in killed or dropped, (
                    f"step {key} ran again although its worker {worker} was neither killed "
                    f"nor lost the run: executions by {[w for _, w in executions]}, "
                    f"killed {sorted(killed)}"
                )
                superseded[worker] = superseded.get(worker, 0) + 1
        # A killed worker had at most `concurrency` steps in flight when it died.
        over = {pid: n for pid, n in superseded.items() if pid in killed and n > CONCURRENCY}
        assert not over, f"killed workers with more re-run steps than runs in flight: {over}"
        reruns = len(rows) - len(by_key)
        recoveries = query(url, "SELECT coalesce(sum(recoveries), 0) FROM runs")[0][0]
        print(
            f"\nchaos: {runs} runs x {steps} steps, {kills} SIGKILLs, {recoveries} takeovers, "
            f"{reruns} step re-executions (in flight at a kill), 0 lost; "
            f"{unfinished_at_end_of_chaos} runs were still in flight when the kills stopped"
        )
        assert recoveries > 0  # the kills really did hit runs in flight
    finally:
        client.close()


def test_chaos_kill_workers_every_second(pg_url: str, tmp_path: Path) -> None:
    chaos(pg_url, tmp_path, runs=60, steps=10, target_kills=6)


@pytest.mark.slow
def test_chaos_full(pg_url: str, tmp_path: Path) -> None:
    chaos(pg_url, tmp_path, runs=300, steps=10, target_kills=25)
