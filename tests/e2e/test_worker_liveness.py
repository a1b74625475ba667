"""A dead worker's runs move at once; a paused one's only when its lease runs out.

Real worker processes on a SQLite file and on PostgreSQL (tests/e2e/lease_app.py, whose steps
log their starts to an fsynced ledger). A SIGKILLed worker's liveness lock — a ``flock`` the
kernel drops with the process, an advisory lock the server drops with its session — lets an
idle worker take its run over long before the run's 60 s lease would expire: only liveness can
explain that takeover. A SIGSTOPped worker keeps its lock, so nothing moves before its lease
expires, and once woken after the takeover its writes are fenced.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import client, wait_until, worker_pool
from tests.e2e.lease_app import read_effects
from tests.pg import postgres_schema_url

APP = "tests.e2e.lease_app:app"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tether.db'}"
    else:
        with postgres_schema_url() as url:
            yield url


def _starts(ledger: Path, key: str) -> list[int]:
    return [pid for event, k, pid in read_effects(ledger) if event == "start" and k == key]


def test_a_killed_workers_run_resumes_on_an_idle_worker_before_its_lease_expires(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lease = 60.0
    monkeypatch.setenv("TETHER_E2E_LEASE", str(lease))
    ledger = tmp_path / "ledger.txt"
    app = client(store)
    with worker_pool(tmp_path, store) as workers:
        victim = workers.start("victim", app=APP)
        handle = app.start("effects", {"steps": 2, "pause": 5.0})
        key = f"{handle.id}:1"
        wait_until(lambda: _starts(ledger, key), timeout=30, what="the victim starting step 1")
        taker = workers.start("taker", app=APP)
        wait_until(lambda: "started" in workers.log("taker"), timeout=30, what="taker up")
        workers.kill("victim")
        # Far below the lease: a takeover by now is the liveness rule's, not the lease's.
        wait_until(
            lambda: taker.pid in _starts(ledger, key),
            timeout=lease / 2,
            what="the idle worker re-executing the killed worker's step",
        )
        info = app.get_run(handle.id)
        assert (info.lease_owner or "").startswith("taker:")
        assert info.recoveries == 1, "a takeover of a dead worker counts one recovery"
        assert _starts(ledger, key) == [victim.pid, taker.pid]
        assert handle.result(timeout=60) == 0 + 1


def test_a_paused_worker_keeps_its_runs_until_its_lease_expires_and_stays_fenced(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_E2E_LEASE", "4")
    ledger = tmp_path / "ledger.txt"
    app = client(store)
    with worker_pool(tmp_path, store) as workers:
        zombie = workers.start("zombie", app=APP)
        handle = app.start("effects", {"steps": 2, "pause": 3.0})
        key = f"{handle.id}:1"
        wait_until(lambda: _starts(ledger, key), timeout=30, what="the zombie starting step 1")
        taker = workers.start("taker", app=APP)
        wait_until(lambda: "started" in workers.log("taker"), timeout=30, what="taker up")
        zombie.send_signal(signal.SIGSTOP)
        try:
            time.sleep(0.5)  # a renewal sent just before the stop has landed
            expires = app.get_run(handle.id).lease_expires
            assert expires is not None
            # Until the zombie's lease expires (store clock = this host's clock), the run stays
            # the zombie's: it still holds its liveness lock.
            while time.time() < expires.timestamp() - 0.5:
                info = app.get_run(handle.id)
                assert (info.lease_owner or "").startswith("zombie:"), (
                    f"a paused worker lost its run before its lease expired: {info.lease_owner}"
                )
                assert _starts(ledger, key) == [zombie.pid]
                time.sleep(0.05)
            wait_until(
                lambda: taker.pid in _starts(ledger, key),
                timeout=60,
                what="the taker re-executing the step once the lease expired",
            )
        finally:
            zombie.send_signal(signal.SIGCONT)
        wait_until(
            lambda: f"run {handle.id}: lease lost" in workers.log("zombie"),
            timeout=30,
            what="the zombie's write being fenced",
        )
        assert handle.result(timeout=60) == 0 + 1
        info = app.get_run(handle.id)
        assert info.recoveries == 1
