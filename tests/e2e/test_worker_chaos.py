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
    run_chaos(workers, rounds=3, runs_per_round=8, steps=6, workers_at_once=2, kills_per_round=6)


@pytest.mark.slow
def test_random_kills_soak(workers: Workers) -> None:
    run_chaos(
        workers, rounds=12, runs_per_round=20, steps=10, workers_at_once=3, kills_per_round=30
    )


def run_chaos(
    workers: Workers,
    *,
    rounds: int,
    runs_per_round: int,
    steps: int,
    workers_at_once: int,
    kills_per_round: int,
) -> None:
    """Rounds of: start runs, SIGKILL a random worker at a random moment and start a
    replacement, until the round's runs have all finished; signals arrive meanwhile."""
    seed = int(os.environ.get("TETHER_CHAOS_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(f"chaos seed {seed} (rerun with TETHER_CHAOS_SEED={seed})")
    app = client(workers.store)
    started = time.monotonic()
    all_runs: list[str] = []
    expected_go: dict[str, int] = {}
    kills = 0
    for _ in range(workers_at_once):
        workers.start(args=["--concurrency", "4"])

    for round_no in range(rounds):
        # Half the runs are plain step chains, half sleep and wait for a signal "go". Half of
        # those get their signal at once (kept in the mailbox until they wait for it), the
        # others once they are seen waiting.
        runs: list[str] = []
        early: dict[str, int] = {}
        late: dict[str, int] = {}
        for i in range(runs_per_round):
            if i % 2 == 0:
                runs.append(app.start("chaos", {"steps": steps, "max_pause": 0.15}).id)
                continue
            run_id = app.start("mixed", {"nap": 0.2}).id
            runs.append(run_id)
            if i % 4 == 1:
                app.signal(run_id, "go", i)
                early[run_id] = i
            else:
                late[run_id] = i
        all_runs += runs
        expected_go.update(early)
        expected_go.update(late)
        round_deadline = time.monotonic() + 40
        round_kills = 0
        while not all(app.get_run(r).finished for r in runs):
            assert time.monotonic() < round_deadline, (
                f"round {round_no} did not finish: {describe(app, runs)}"
            )
            time.sleep(rng.uniform(0.05, 0.6))
            for run_id, value in list(late.items()):
                if app.get_run(run_id).waiting_for == "go":
                    app.signal(run_id, "go", value)
                    del late[run_id]
            if round_kills == kills_per_round:
                continue  # enough carnage: let the round finish, bounding the test's time
            victim = rng.choice(working(workers) or workers.alive())
            workers.kill(victim)
            kills += 1
            round_kills += 1
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
        kinds = [s.kind for s in info.steps]
        if run_id in expected_go:
            assert kinds == ["step", "sleep", "step", "signal", "step"], kinds
            assert info.output == {"go": expected_go[run_id]}
        else:
            assert kinds == ["step"] * steps, kinds
        reruns += check_exactly_once(info, ledger, workers.killed)
    elapsed = time.monotonic() - started
    print(f"{len(all_runs)} runs, {kills} kills, {reruns} in-flight steps re-run, {elapsed:.1f}s")
    assert kills >= rounds
    # The kills did land mid-step (otherwise this test proved nothing about recovery).
    assert reruns >= 1


def working(workers: Workers) -> list[str]:
    """The live workers that have started a step: a kill meant to land mid-step picks among
    them, not a replacement still starting up (under load that can take longer than the gap
    between kills, and a round of such kills exercised no recovery at all)."""
    started = {e.pid for runs in read_ledger(workers.ledger).values() for e in runs}
    return [name for name in workers.alive() if workers.procs[name].pid in started]
