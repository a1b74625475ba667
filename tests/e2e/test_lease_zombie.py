"""A paused ("zombie") worker woken after its lease was taken over starts no new step.

Fencing stops the zombie's writes; this checks the step *start*: the zombie is SIGSTOPped
between two steps (its last step journaled, the next not begun), another worker takes the run
over, then the zombie is woken. Its next step must not begin — its body would be a side effect
run twice, the write fenced only afterwards. Real worker processes on a SQLite file and on
PostgreSQL; the steps log to an fsynced file (tests/e2e/lease_app.py).
"""

from __future__ import annotations

import signal
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


def test_a_zombie_woken_after_a_takeover_starts_no_new_step(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_E2E_LEASE", "1")
    ledger = tmp_path / "ledger.txt"
    app = client(store)
    with worker_pool(tmp_path, store) as workers:
        zombie = workers.start("zombie", app=APP)
        # A long stretch of workflow code between steps: the zombie is paused inside it.
        handle = app.start("effects", {"steps": 3, "pause": 0.05, "gap": 2.0})

        def first_step_journaled() -> bool:
            steps = app.get_run(handle.id).steps
            return any(s.seq == 1 and s.status == "completed" for s in steps)

        wait_until(first_step_journaled, timeout=30, what="the zombie journaling step 1")
        zombie.send_signal(signal.SIGSTOP)
        try:
            workers.start("taker", app=APP)
            wait_until(
                lambda: (app.get_run(handle.id).lease_owner or "").startswith("taker:"),
                timeout=30,
                what="the taker taking the run over",
            )
            woken_at = len(read_effects(ledger))
        finally:
            zombie.send_signal(signal.SIGCONT)
        wait_until(
            lambda: f"run {handle.id}: lease lost" in workers.log("zombie"),
            timeout=30,
            what="the zombie dropping the run",
        )
        assert handle.result(timeout=60) == 0 + 1 + 2

    by_zombie = [e for e in read_effects(ledger)[woken_at:] if e[2] == zombie.pid]
    assert not any(event == "start" for event, _, _ in by_zombie), (
        f"the zombie began a step after it was woken with its lease taken over: {by_zombie}"
    )
    starts = [key for event, key, _ in read_effects(ledger) if event == "start"]
    assert len(starts) == len(set(starts)) == 3, f"a step body ran twice: {starts}"
