"""Workflows for the lease tests, run by real workers:
``tether worker --app tests.e2e.lease_app:app``.

Every step appends ``start <idempotency key> <pid>`` to the file named by
``$TETHER_E2E_LEDGER`` when its body begins and ``end <key> <pid>`` when it ends, each line
fsynced before the step goes on, so the record of side effects survives any kill or outage. A
key with two ``start`` lines is a side effect that ran twice.

``$TETHER_E2E_LEASE`` (seconds, default 2) and ``$TETHER_E2E_MAX_RECOVERIES`` (default 5)
configure the App.
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from pathlib import Path

import tether

app = tether.App(
    lease_seconds=float(os.environ.get("TETHER_E2E_LEASE", "2")),
    max_recoveries=int(os.environ.get("TETHER_E2E_MAX_RECOVERIES", "5")),
)


def _effect(event: str) -> None:
    path = os.environ.get("TETHER_E2E_LEDGER")
    if not path:
        return
    line = f"{event} {tether.current_step().idempotency_key} {os.getpid()}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


@app.step(retry=tether.Retry(max_attempts=1))
async def effect(index: int, pause: float) -> int:
    _effect("start")
    await asyncio.sleep(pause)
    _effect("end")
    return index


@app.workflow
async def effects(ctx: tether.Context, steps: int, pause: float, gap: float = 0.0) -> int:
    """`steps` side-effecting steps of `pause` seconds each; `gap` seconds of (unjournaled)
    workflow code between two steps."""
    total = 0
    for index in range(steps):
        total += await effect(index, pause)
        if gap:
            await asyncio.sleep(gap)
    return total


def read_effects(path: Path) -> list[tuple[str, str, int]]:
    """``(event, key, pid)`` lines in the order they were written."""
    if not path.exists():
        return []
    out: list[tuple[str, str, int]] = []
    for line in path.read_text().splitlines():
        event, key, pid = line.split()
        out.append((event, key, int(pid)))
    return out


def repeated_starts(path: Path) -> dict[str, list[int]]:
    """Keys whose step body started more than once, with the pids that started it."""
    starts: dict[str, list[int]] = defaultdict(list)
    for event, key, pid in read_effects(path):
        if event == "start":
            starts[key].append(pid)
    return {key: pids for key, pids in starts.items() if len(pids) > 1}
