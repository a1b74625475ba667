"""A worker process for the stuck-vs-slow tests: `python -m tests.integration.observe_worker_app`
(store from $TETHER_STORE, lease from $OBSERVE_TEST_LEASE)."""

from __future__ import annotations

import os
import time

import tether

app = tether.App(
    os.environ.get("TETHER_STORE"), lease_seconds=float(os.environ.get("OBSERVE_TEST_LEASE", "1"))
)


@app.step(name="research")
def research(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


@app.workflow(name="probe")
async def probe(ctx: tether.Context, seconds: float) -> str:
    return await research(seconds)


if __name__ == "__main__":
    app.run_worker(concurrency=8, grace_period=0.5)
