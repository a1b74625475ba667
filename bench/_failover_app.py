"""The app `bench_failover.py` runs in real worker processes (``tether worker --app
_failover_app:app``, the store from ``--store``).

Its one step marks the moment it starts in a file named ``<run id>.<pid>`` under
``$FAILOVER_DIR``, then runs until the file ``gate`` exists there: the benchmark kills or pauses
the worker inside it and times how long until another worker starts the same step.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import tether

app = tether.App(lease_seconds=float(os.environ.get("FAILOVER_LEASE", "1.0")))


@app.step
async def held() -> int:
    here = Path(os.environ["FAILOVER_DIR"])
    (here / f"{tether.current_step().run_id}.{os.getpid()}").touch()
    while not (here / "gate").exists():  # noqa: ASYNC110 - another process creates it
        await asyncio.sleep(0.01)
    return os.getpid()


@app.workflow
async def failover(ctx: tether.Context) -> int:
    return await held()
