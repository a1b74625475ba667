"""Chaos against PostgreSQL with real worker processes: SIGKILL a random worker about every
second and start a replacement; at the end every run succeeded, every step's side effect is
present exactly once, no journal entry is duplicated and no run is stranded.

The CI version is small (60 runs x 10 steps); ``-m slow`` runs the full 300 x 10.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
from tests.e2e.pg_procs import prepare, query, wait_until, workers
from tests.pg import postgres_schema_url

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_schema_url() as url:
        prepare(url)
        yield url


def chaos(url: str, log_dir: Path, *, runs: int, steps: int, chaos_seconds: float) -> None:
    rng = random.Random(7)
    client = tether.App(url)
    try:
        ids = [client.start("chain", {"steps": steps}).id for _ in range(runs)]
        kills = 0
        with workers(
            url, log_dir, PG_APP_LEASE="1.5", PG_APP_STEP_SECONDS="0.25", PG_APP_CONCURRENCY="8"
        ) as pool:
            for _ in range(3):
                pool.start()
            stop_at = time.monotonic() + chaos_seconds
            while time.monotonic() < stop_at:
                time.sleep(rng.uniform(0.7, 1.3))
                victim = rng.choice(pool.alive())
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait()
                kills += 1
                pool.start()
            unfinished_at_end_of_chaos = query(
                url, "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')"
            )[0][0]

            def all_finished() -> bool:
                rows = query(url, "SELECT count(*) FROM runs WHERE status IN ('succeeded', 'failed', 'refused', 'cancelled')")
                return rows[0][0] == runs

            wait_until(all_finished, 90, f"all {runs} runs to finish after {kills} kills")

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
        # Side effects: one row per idempotency key, for every step of every run.
        effects = query(url, "SELECT count(*), count(DISTINCT key), sum(executions) FROM effects")
        count, distinct, executions = effects[0]
        assert count == distinct == runs * steps
        recoveries = query(url, "SELECT coalesce(sum(recoveries), 0) FROM runs")[0][0]
        print(
            f"\nchaos: {runs} runs x {steps} steps, {kills} SIGKILLs, {recoveries} takeovers, "
            f"{executions - count} step re-executions (at-least-once), 0 lost, 0 duplicated; "
            f"{unfinished_at_end_of_chaos} runs were still in flight when the kills stopped"
        )
        assert kills >= chaos_seconds / 2
        assert recoveries > 0  # the kills really did hit runs in flight
    finally:
        client.close()


def test_chaos_kill_workers_every_second(pg_url: str, tmp_path: Path) -> None:
    chaos(pg_url, tmp_path, runs=60, steps=10, chaos_seconds=8)


@pytest.mark.slow
def test_chaos_full(pg_url: str, tmp_path: Path) -> None:
    chaos(pg_url, tmp_path, runs=300, steps=10, chaos_seconds=30)
