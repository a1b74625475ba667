"""The app `bench_backlog.py` runs in real worker processes (``tether worker --app
_backlog_app:app``): runs of five no-op steps, and runs that first wait for a signal."""

from __future__ import annotations

import os

import tether

app = tether.App(lease_seconds=float(os.environ.get("BACKLOG_LEASE", "10")))


@app.step
async def noop(i: int) -> int:
    return i


@app.workflow
async def five(ctx: tether.Context) -> int:
    total = 0
    for i in range(5):
        total += await noop(i)
    return total


@app.workflow
async def signalled(ctx: tether.Context) -> int:
    await ctx.wait_for_signal("go")
    total = 0
    for i in range(5):
        total += await noop(i)
    return total
