"""A per-second schedule served by two real worker processes, one of them SIGKILLed midway:
every tick starts exactly one run, and the surviving worker keeps the ticks coming."""

from __future__ import annotations

import os
from pathlib import Path

import tether
from tests.e2e.harness import client, wait_until, worker_pool


def _ticks(observer: tether.App) -> list[int]:
    """The tick of every scheduled run (from its label, whatever its id), with repeats."""
    runs = observer.list_runs(workflow="tick", limit=1000)
    return sorted(int(r.tether_labels["tether.schedule.tick"]) for r in runs)


def test_one_run_per_tick_across_a_worker_kill(tmp_path: Path, store_url: str) -> None:
    os.environ["SCHEDULE_STORE"] = store_url
    try:
        with worker_pool(tmp_path, store_url) as workers:
            for name in ("w1", "w2"):
                workers.start(name, app="tests.e2e.schedule_app:app")
            observer = client(store_url)
            wait_until(lambda: len(_ticks(observer)) >= 3, timeout=60,
                       what="three ticks with both workers")
            workers.kill("w1")
            before = len(_ticks(observer))
            wait_until(lambda: len(_ticks(observer)) >= before + 4, timeout=60,
                       what="four more ticks after the kill")
            workers.kill("w2")
            ticks = _ticks(observer)
    finally:
        os.environ.pop("SCHEDULE_STORE", None)
    # One run per tick (two workers firing the same tick would show it twice), and no second
    # lost while a worker was alive.
    assert len(ticks) == len(set(ticks))
    assert ticks == list(range(ticks[0], ticks[-1] + 1)), ticks
