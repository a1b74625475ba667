"""The app of the rolling-upgrade tests: workers of two tether versions load it
(``--app tests.e2e.upgrade_app:app``), so it uses only API that both versions have.

Every step appends ``<idempotency key> <step> <pid> <fresh|JOURNALED>`` to
``$TETHER_E2E_LEDGER`` when it starts (tests/e2e/harness.py reads it), ``JOURNALED`` when the
journal already held its result: a completed step run again, which must never happen.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Any

import tether

app = tether.App(lease_seconds=1.0, max_recoveries=100)


async def record() -> None:
    step = tether.current_step()
    ledger = os.environ.get("TETHER_E2E_LEDGER")
    if not ledger:
        return
    journal = await app.store.load_steps(step.run_id)
    done = any(r.seq == step.seq and r.status == "completed" for r in journal)
    line = f"{step.idempotency_key} {step.name} {os.getpid()} {'JOURNALED' if done else 'fresh'}\n"
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def held() -> bool:
    hold = os.environ.get("TETHER_E2E_HOLD", "")
    return bool(hold) and os.path.exists(hold)


@app.step
async def work(index: int, pause: float) -> dict[str, Any]:
    """Takes `pause` seconds, and does not end while the file ``$TETHER_E2E_HOLD`` exists (so
    a test can kill a worker surely inside a step)."""
    await record()
    await asyncio.sleep(pause)
    # Another process removes the file, so there is no event to await: poll it.
    while held():  # noqa: ASYNC110 - a stat is not worth a thread
        await asyncio.sleep(0.02)
    return {"index": index, "pid": os.getpid()}


@app.workflow
async def rolling(ctx: tether.Context, steps: int = 6, pause: float = 0.25,
                  wait: bool = False) -> dict[str, Any]:
    """`steps` journaled steps; with `wait`, a wait for the signal ``go`` half-way."""
    done = []
    for index in range(steps):
        if wait and index == steps // 2:
            await ctx.wait_for_signal("go", timeout=timedelta(minutes=10))
        done.append(await work(index, pause))
    return {"steps": len(done)}
