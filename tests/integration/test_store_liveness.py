"""The liveness rule of claims, against every backend: a run whose owner holds the store's
liveness lock is not taken over while its lease runs; once its process is SIGKILLed (the
kernel drops its lock file's ``flock``, the server its session's advisory lock) any other
claimer takes it over at once, and the old holder's token is fenced. The owner is a small
Python process (`HOLDER`); the claimer is this test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tether.store import open_store
from tether.store.base import LIVE_MARK, Claim, NewRun, StepRecord, Store

WF = (("wf", "1"),)
pytestmark = pytest.mark.timeout(60)
DEAD = f"a:1{LIVE_MARK}"
TAKER = f"b:2{LIVE_MARK}"


HOLDER = """
import asyncio, sys
from tether.store import open_store
async def main():
    store = open_store(sys.argv[1])
    await store.open()
    assert await store.hold_liveness(sys.argv[2])
    [claim] = await store.claim_runs(sys.argv[2], (("wf", "1"),), limit=1, lease_seconds=60)
    print(claim.token, flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


@pytest.fixture
async def stores(store_url: str) -> AsyncIterator[tuple[Store, Store]]:
    a, b = open_store(store_url), open_store(store_url)
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


def holder(store_url: str, owner: str) -> tuple[subprocess.Popen[str], int]:
    """A process that holds `owner`'s liveness lock and claims one run; returns its token."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[2] / "src"), env.get("PYTHONPATH", "")]
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, store_url, owner], stdout=subprocess.PIPE, text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip().isdigit(), f"the holder process did not claim the run: {line!r}"
    return proc, int(line)


async def claim_within(
    store: Store, owner: str, seconds: float, *, one: str | None = None
) -> list[Claim]:
    """Claim (`claim_runs`, or `claim_run` of run `one`) until something comes back or
    `seconds` pass (claims probe liveness at most every so often)."""
    deadline = time.monotonic() + seconds
    while True:
        if one is None:
            claims = await store.claim_runs(owner, WF, limit=5, lease_seconds=60)
        else:
            claim = await store.claim_run(one, owner, lease_seconds=60)
            claims = [] if claim is None else [claim]
        if claims or time.monotonic() > deadline:
            return claims
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("one", [None, "r"], ids=["claim_runs", "claim_run"])
async def test_a_live_owners_run_stays_and_a_killed_owners_run_moves_at_once(
    store_url: str, stores: tuple[Store, Store], one: str | None
) -> None:
    _, b = stores
    assert await b.hold_liveness(TAKER)
    await b.create_run(NewRun(id="r", workflow="wf", version="1", input={}))
    proc, token = holder(store_url, DEAD)
    try:
        # The owner lives (its lock is held) and its lease runs for a minute: nothing to take.
        assert await claim_within(b, TAKER, 0.5, one=one) == []
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        [taken] = await claim_within(b, TAKER, 10, one=one)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert taken.run.id == "r" and taken.recovered and taken.token > token
    run = await b.get_run("r")
    assert run is not None and run.lease_owner == TAKER and run.recoveries == 1
    # The dead holder's token is fenced, exactly as after a lease expiry.
    stale = StepRecord(run_id="r", seq=1, name="s", kind="step", status="completed")
    assert not await b.write_step("r", token, stale)
    await b.drop_liveness(TAKER)


async def test_an_owner_without_the_mark_is_taken_over_only_by_lease(
    stores: tuple[Store, Store],
) -> None:
    a, b = stores
    assert await b.hold_liveness(TAKER)
    await a.create_run(NewRun(id="r", workflow="wf", version="1", input={}))
    await a.claim_runs("app-run:1", WF, limit=5, lease_seconds=60)  # no lock, no mark
    assert await claim_within(b, TAKER, 0.5) == []
    await b.drop_liveness(TAKER)
