"""The workflows `bench_cancel.py` cancels, loaded by a real `tether worker` process.

Each step touches ``$BENCH_CANCEL_DIR/<run id>.started`` when it begins, then runs for a minute
unless interrupted. The lease is long (600 s: a heartbeat every 200 s), so what the benchmark
measures is the worker's cancel watch, not its heartbeat.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import tether

app = tether.App(lease_seconds=600.0)


def _started() -> None:
    step = tether.current_step()
    (Path(os.environ["BENCH_CANCEL_DIR"]) / f"{step.run_id}.started").touch()


@app.step
async def async_minute() -> str:
    _started()
    await asyncio.sleep(60)
    return "done"


@app.step
def thread_minute() -> str:
    _started()
    time.sleep(60)
    return "done"


@app.workflow
async def async_work(ctx: tether.Context) -> str:
    return await async_minute()


@app.workflow
async def thread_work(ctx: tether.Context) -> str:
    return await thread_minute()
