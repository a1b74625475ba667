"""Randomised crash test: workers SIGKILLed at random points and replaced, over several rounds.

Every run must succeed and every step whose result was journaled must have run exactly once;
only the step a killed worker was executing may have run again.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    Workers,
    check_exactly_once,
    client,
    describe,
    read_ledger,
    wait_until,
    worker_pool,
)


@pytest.fixture
def workers(tmp_path: Path, store_url: str) -> Iterator[Workers]:
    with worker_pool(tmp_path, store_url) as pool:
        yield pool


def test_random_kills_never_lose_or_repeat_journaled_steps(workers: Workers) -> None:
    run_chaos(workers, rounds=3, runs_per_round=8, steps=6, workers_at_once=2)


@pytest.mark.slow
def test_random_kills_soak(workers: Workers) -> None:
    run_chaos(workers, rounds=12, runs_per_round=20, steps=10, workers_at_once=3)


def run_chaos(
    workers: Workers, *, rounds: int, runs_per_round: int, steps: int, workers_at_once: int
) -> None:
    """Rounds of: start runs, SIGKILL a random worker at a random moment and start a
    replacement, until the round's runs have all finished."""
    seed = int(os.environ.get("TETHER_CHAOS_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(f"chaos seed {seed} (rerun with TETHER_CHAOS_SEED={seed})")
    app = client(workers.store)
    started = time.monotonic()
    all_runs: list[str] = []
    kills = 0
    for _ in range(workers_at_once):
        workers.start(args=["--concurrency", "4"])

    for round_no in range(rounds):
        runs = [
            app.start("chaos", {"steps": steps, "max_pause": 0.15}).id
            for _ in range(runs_per_round)
        ]
        all_runs += runs
        round_deadline = time.monotonic() + 40
        while not all(app.get_run(r).finished for r in runs):
            assert time.monotonic() < round_deadline, (
                f"round {round_no} did not finish: {describe(app, runs)}"
            )
            time.sleep(rng.uniform(0.05, 0.6))
            victim = rng.choice(workers.alive())
            workers.kill(victim)
            kills += 1
            workers.start(args=["--concurrency", "4"])

    # Whatever is left queued after the last kill finishes on the surviving workers.
    wait_until(
        lambda: all(app.get_run(r).finished for r in all_runs),
        timeout=30,
        what="every run to finish",
    )
    ledger = read_ledger(workers.ledger)
    reruns = 0
    for run_id in all_runs:
        info = app.get_run(run_id)
        assert info.status == "succeeded", (run_id, info.error)
        assert [s.seq for s in info.steps if s.kind == "step"] == list(range(1, steps + 1))
        reruns += check_exactly_once(info, ledger, workers.killed)
    elapsed = time.monotonic() - started
    print(f"{len(all_runs)} runs, {kills} kills, {reruns} in-flight steps re-run, {elapsed:.1f}s")
    assert kills >= rounds
    # The kills did land mid-step (otherwise this test proved nothing about recovery).
    assert reruns >= 1
