"""Change detection on generated data: a prompt change that doubles latency is flagged with
its test, effect size and sample sizes; stable data is not flagged (fixed seeds)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

import tether
from tests.observe_data import Call, write_calls
from tether.observe.changes import detect_changes, mann_whitney_u, two_proportion_z

# Generated calls happened over the last ~80 minutes (their runs are created now).
T0 = time.time() - 160 * 30 - 120


def test_mann_whitney_matches_the_textbook() -> None:
    # scipy.stats.mannwhitneyu([1, 2, 3], [4, 5, 6], method="asymptotic") -> U=0, p=0.080856
    u, p = mann_whitney_u([1, 2, 3], [4, 5, 6])
    assert u == 0
    assert p == pytest.approx(0.080856, abs=1e-5)
    # With ties, by hand: ranks 1, 3, 3, 5 for x (the three 2s share rank 3), so
    # U = 12 - 4*5/2 = 2; variance = 4*3/12 * (8 - (3**3 - 3) / (7*6)) = 7.4286;
    # z = (|2 - 6| - 0.5) / sqrt(7.4286) = 1.2842; p = erfc(z / sqrt 2) = 0.19909.
    u, p = mann_whitney_u([1, 2, 2, 3], [2, 4, 5])
    assert u == 2
    assert p == pytest.approx(0.19909, abs=1e-4)
    assert mann_whitney_u([5.0] * 10, [5.0] * 10)[1] == 1.0


def test_two_proportion_z() -> None:
    z, p = two_proportion_z(10, 100, 30, 100)
    assert z == pytest.approx(3.5355, abs=1e-3)
    assert p == pytest.approx(0.000407, abs=1e-5)
    assert two_proportion_z(0, 50, 0, 50) == (0.0, 1.0)


def generated(seed: int, *, factor: float, fail_after: float = 0.02) -> list[Call]:
    rng = random.Random(seed)
    calls: list[Call] = []
    for i in range(160):
        after = i >= 80
        latency = rng.lognormvariate(0.0, 0.35) * (factor if after else 1.0)
        calls.append(Call(
            node="researcher",
            started_at=T0 + i * 30,
            latency=latency,
            prompt_hash="p2" if after else "p1",
            cost_usd=0.001 * rng.uniform(0.9, 1.1),
            failed=rng.random() < (fail_after if after else 0.02),
        ))
        # An unchanged node alongside: its numbers never move.
        calls.append(Call(node="drafter", started_at=T0 + i * 30 + 5,
                          latency=rng.lognormvariate(0.5, 0.35), prompt_hash="d1",
                          app_version="1.0" if i < 80 else "1.1",
                          cost_usd=0.002 * rng.uniform(0.9, 1.1),
                          failed=rng.random() < 0.02))
    return calls


def changes_for(tmp_url: str, calls: list[Call], dims: tuple[str, ...] = ("version", "app_version", "window")) -> list:
    app = tether.App(tmp_url)
    asyncio.run(write_calls(app.store, calls))
    return asyncio.run(detect_changes(app, since=T0 - 1, until=time.time() + 1,
                                      dimensions=dims))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_prompt_change_that_doubles_latency_is_flagged(sqlite_url: str, seed: int) -> None:
    found = changes_for(sqlite_url, generated(seed, factor=2.0))
    latency = [c for c in found if c.metric == "latency" and c.dimension == "version"]
    assert len(latency) == 1
    change = latency[0]
    assert change.node == "researcher"
    assert (change.baseline, change.candidate) == ("p1", "p2")
    assert change.test == "mann-whitney-u"
    assert change.p_value < 0.001
    assert 1.6 < change.effect < 2.5
    assert change.effect_size > 0.5
    assert change.n_baseline + change.n_candidate >= 150
    assert "researcher: latency" in change.describe()
    # The node whose prompt did not change is never flagged, though its app version moved.
    assert not [c for c in found if c.node == "drafter"]


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_stable_data_is_not_flagged(sqlite_url: str, seed: int) -> None:
    assert changes_for(sqlite_url, generated(seed, factor=1.0)) == []


def test_a_failure_rate_jump_is_flagged_with_the_two_proportion_test(sqlite_url: str) -> None:
    found = changes_for(sqlite_url, generated(7, factor=1.0, fail_after=0.30), ("version",))
    failures = [c for c in found if c.metric == "failure_rate"]
    assert len(failures) == 1
    assert failures[0].test == "two-proportion-z"
    assert failures[0].candidate_value > failures[0].baseline_value + 0.1
