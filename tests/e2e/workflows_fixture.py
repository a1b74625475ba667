"""Workflows for the end-to-end tests, loaded by real worker processes with
``tether worker --app tests.e2e.workflows_fixture:app``.

Every step appends one line to the ledger file named by ``$TETHER_E2E_LEDGER`` when it starts
executing: ``<idempotency key> <step name> <pid>``. The tests count those lines to prove that a
step whose result was journaled ran exactly once, and which worker process ran it.

The lease is short (1 s) so takeovers after a SIGKILL happen within a second or two.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from datetime import timedelta
from typing import Any

import tether

app = tether.App(lease_seconds=1.0, max_recoveries=100)
"""Recoveries are generous: the chaos test kills workers holding the same run many times."""

poison_app = tether.App(lease_seconds=1.0, max_recoveries=2)
"""For the poison-run test only: a run that kills its worker fails after 2 takeovers."""

NO_RETRY = tether.Retry(max_attempts=1)


def record_execution(state: str = "unchecked") -> None:
    """Append this step execution to the ledger (O_APPEND: one atomic line per write).

    `state` is what the journal held for this step when the execution began: ``fresh`` (no
    completed result) or ``JOURNALED`` (a completed result: the engine ran a journaled step
    again, which must never happen).
    """
    step = tether.current_step()
    ledger = os.environ.get("TETHER_E2E_LEDGER")
    if not ledger:
        return
    line = f"{step.idempotency_key} {step.name} {os.getpid()} {state}\n".encode()
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


async def record_checked_execution(on: tether.App) -> None:
    """`record_execution`, after asking the store whether this step's result is already
    journaled: evidence the journaled pid alone cannot give, because a re-executed step
    overwrites its journal entry."""
    step = tether.current_step()
    journal = await on.store.load_steps(step.run_id)
    done = any(r.seq == step.seq and r.status == "completed" for r in journal)
    record_execution("JOURNALED" if done else "fresh")


# --- steps ------------------------------------------------------------------------------------


@app.step
async def work(index: int, pause: float = 0.0) -> dict[str, Any]:
    await record_checked_execution(app)
    if pause:
        await asyncio.sleep(pause)
    return {"index": index, "pid": os.getpid()}


@app.step
def work_sync(index: int, pause: float = 0.0) -> dict[str, Any]:
    """A plain ``def`` step (runs in a thread)."""
    import time

    record_execution()
    if pause:
        time.sleep(pause)
    return {"index": index, "pid": os.getpid()}


def gate_open(gate: str) -> bool:
    """The file `gate` opens the gate for every process; ``<gate>.<pid>`` for one process only
    (so a test can let a paused worker finish its step while another worker stays inside it)."""
    return os.path.exists(gate) or os.path.exists(f"{gate}.{os.getpid()}")


@app.step
async def block(gate: str) -> dict[str, Any]:
    """Runs until its gate opens (see `gate_open`: the test decides when the step may finish)."""
    await record_checked_execution(app)
    # Another process creates the file, so there is no event to await: poll it.
    while not gate_open(gate):  # noqa: ASYNC110 - a stat is not worth a thread
        await asyncio.sleep(0.02)
    return {"gate": "released", "pid": os.getpid()}


@app.step
def block_sync(gate: str) -> dict[str, Any]:
    """`block` as a plain ``def`` step: a thread the event loop cannot cancel."""
    import time

    record_execution()
    while not gate_open(gate):
        time.sleep(0.02)
    return {"gate": "released", "pid": os.getpid()}


@app.step(retry=tether.Retry(max_attempts=3, initial_delay=1.0, backoff=1.0, jitter=0.0))
async def always_down(service: str) -> None:
    """Fails every attempt; a 1 s backoff between attempts gives the test time to kill."""
    await record_checked_execution(app)
    raise ConnectionError(f"{service} is down")


@app.step(retry=NO_RETRY)
def exit_process(code: int) -> None:
    """A library calling sys.exit() inside a step: a failure of the step, not of the worker."""
    record_execution()
    sys.exit(code)


@app.step
async def hog(seconds: float) -> dict[str, Any]:
    """The classic mistake: blocking code in an ``async def`` step."""
    import time

    await record_checked_execution(app)
    time.sleep(seconds)  # noqa: ASYNC251 - blocking on purpose
    return {"pid": os.getpid()}


@app.step(retry=NO_RETRY)
async def explode(message: str) -> None:
    await record_checked_execution(app)
    raise ValueError(message)


@poison_app.step
async def prepare() -> str:
    await record_checked_execution(poison_app)
    return "ready"


@poison_app.step
async def kill_my_worker() -> None:
    """Dies like a native crash or the OOM killer would: no exception, no cleanup."""
    await record_checked_execution(poison_app)
    os.kill(os.getpid(), signal.SIGKILL)


# --- workflows --------------------------------------------------------------------------------


@app.workflow
async def pipeline(
    ctx: tether.Context,
    steps: int = 3,
    pause: float = 0.0,
    gate: str = "",
    gate_at: int = -1,
    sync_gate: bool = False,
) -> dict[str, Any]:
    """`steps` journaled steps; the one at index `gate_at` blocks until the file `gate`."""
    results: list[Any] = []
    for index in range(steps):
        if index == gate_at:
            results.append(await (block_sync(gate) if sync_gate else block(gate)))
        else:
            results.append(await work(index, pause))
    return {"results": results}


@app.workflow
async def chaos(ctx: tether.Context, steps: int = 6, max_pause: float = 0.15) -> dict[str, Any]:
    """Steps of different lengths, async and sync, so kills land at varied points."""
    rng = random.Random(ctx.run_id)  # seeded by the run: the same pauses on every replay
    for index in range(steps):
        pause = rng.uniform(0.01, max_pause)
        if index % 3 == 2:
            await work_sync(index, pause)
        else:
            await work(index, pause)
    return {"steps": steps}


@app.workflow
async def mixed(ctx: tether.Context, nap: float = 0.2) -> dict[str, Any]:
    """Steps around a durable sleep and a signal wait: suspension and takeover together."""
    await work(0, 0.05)
    await ctx.sleep(timedelta(seconds=nap))
    await work_sync(1, 0.05)
    go = await ctx.wait_for_signal("go", timeout=timedelta(minutes=5))
    await work(2, 0.05)
    return {"go": go}


@app.workflow
async def hogging(ctx: tether.Context, seconds: float = 0.6) -> None:
    await hog(seconds)


@app.workflow
async def approval(ctx: tether.Context, who: str) -> dict[str, Any]:
    await work(0)
    decision = await ctx.wait_for_signal("approval", timeout=timedelta(minutes=5))
    await work(1)
    return {"who": who, "decision": decision}


@app.workflow
async def napper(ctx: tether.Context, seconds: float = 2.0) -> dict[str, Any]:
    before = ctx.now()
    await work(0)
    await ctx.sleep(timedelta(seconds=seconds))
    await work(1)
    after = ctx.now()
    return {"slept": (after - before).total_seconds()}


@app.workflow
async def failing(ctx: tether.Context, message: str = "boom") -> None:
    await work(0)
    await explode(message)


@app.workflow
async def unlucky(ctx: tether.Context, service: str = "search") -> None:
    await work(0)
    await always_down(service)


@app.workflow
async def exiting(ctx: tether.Context, where: str = "step") -> None:
    await work(0)
    if where == "step":
        await exit_process(3)
    sys.exit(5)


@poison_app.workflow
async def poison(ctx: tether.Context) -> str:
    await prepare()
    await kill_my_worker()
    return "unreachable"
