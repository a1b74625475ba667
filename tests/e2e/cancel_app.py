"""Workflows for the cross-process cancel tests, loaded by real worker processes with
``tether worker --app tests.e2e.cancel_app:app``.

Steps leave marker files in ``$TETHER_E2E_MARKERS`` (``<run id>.<what>``) so the test process
can see how far they got. The lease is long (600 s, so the heartbeat comes every 200 s): a cancel
noticed in seconds was noticed by the worker's cancel watch, not by its heartbeat.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import tether

app = tether.App(lease_seconds=600.0)


def mark(what: str) -> None:
    step = tether.current_step()
    folder = Path(os.environ["TETHER_E2E_MARKERS"])
    (folder / f"{step.run_id}.{what}").write_text(str(os.getpid()))


@app.step
async def long_async_step() -> str:
    mark("started")
    try:
        await asyncio.sleep(60)
        mark("completed")
        return "done"
    finally:
        mark("cleanup")


@app.step
def long_thread_step() -> str:
    mark("started")
    release = Path(os.environ["TETHER_E2E_MARKERS"]) / "release"
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    mark("returned")
    return "late"


@app.workflow
async def async_work(ctx: tether.Context) -> str:
    return await long_async_step()


@app.workflow
async def thread_work(ctx: tether.Context) -> str:
    return await long_thread_step()
