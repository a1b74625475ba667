"""A PostgreSQL server stopped and restarted while runs execute repeats no side effect.

The test starts its own throwaway cluster (tests/e2e/pg_cluster.py), three real worker processes
and runs of side-effecting steps that log every body start to an fsynced file
(tests/e2e/lease_app.py). Mid-run the server is stopped (fast shutdown: every session is cut)
and started again after an outage shorter, then longer, than the lease. What is promised
(docs/operations.md, "Database outages"): a restart that keeps the database away for less than
the store's `retry_seconds` (default 10 s) makes no live worker lose a run, whatever the lease —
no step body runs twice, no run counts a recovery — because no lease is taken over until one
lease period after the server started, and live workers renew within that period.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import client, wait_until, worker_pool
from tests.e2e.lease_app import read_effects, repeated_starts
from tests.e2e.pg_cluster import Cluster, throwaway_cluster

APP = "tests.e2e.lease_app:app"
LEASE = 3.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as cluster:
        yield cluster


def _restart_mid_run(
    cluster: Cluster, tmp_path: Path, outage: float, *, runs: int, steps: int
) -> None:
    url = cluster.create_database(f"t{secrets.token_hex(4)}")
    app = client(url)
    ledger = tmp_path / "ledger.txt"
    with worker_pool(tmp_path, url) as workers:
        # Three workers: each one's runs are a takeover away from two others when it is late.
        for name in ("a", "b", "c"):
            workers.start(name, app=APP)
        handles = [app.start("effects", {"steps": steps, "pause": 0.25}) for _ in range(runs)]

        def all_under_way() -> bool:
            done = [sum(s.status == "completed" for s in app.get_run(h.id).steps) for h in handles]
            return min(done) >= 2

        wait_until(all_under_way, timeout=60, what="every run journaling two steps")
        cluster.stop()
        time.sleep(outage)  # the outage itself: the server is down this long
        cluster.start()
        for handle in handles:
            assert handle.result(timeout=120) == sum(range(steps))
        infos = [app.get_run(h.id) for h in handles]

    assert repeated_starts(ledger) == {}, "a step body ran twice across the restart"
    assert [i.recoveries for i in infos] == [0] * runs, "a live worker lost a run to a takeover"
    starts = [key for event, key, _ in read_effects(ledger) if event == "start"]
    assert len(starts) == runs * steps


@pytest.mark.parametrize(
    "outage",
    [pytest.param(LEASE - 0.5, id="shorter-than-the-lease"),
     pytest.param(LEASE + 2.0, id="longer-than-the-lease")],
)
def test_a_restart_mid_run_repeats_no_step(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outage: float
) -> None:
    monkeypatch.setenv("TETHER_E2E_LEASE", str(LEASE))
    _restart_mid_run(cluster, tmp_path, outage, runs=8, steps=12)


@pytest.mark.slow
@pytest.mark.parametrize("outage", [1.0, 4.0, 8.0])
def test_restarts_of_many_lengths_repeat_no_step(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outage: float
) -> None:
    monkeypatch.setenv("TETHER_E2E_LEASE", "2")
    _restart_mid_run(cluster, tmp_path, outage, runs=30, steps=30)
