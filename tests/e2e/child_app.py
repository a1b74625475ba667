"""The apps of the child-run end-to-end test: parents and children on separate workers, so a
test can kill a parent's worker while its children keep running on another."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import tether
from tests.e2e.workflows_fixture import gate_open, record_checked_execution

parent_app = tether.App(lease_seconds=2.0)
"""Knows only the parent workflow: its workers never run a child."""
kid_app = tether.App(lease_seconds=2.0)
"""Knows only the child workflow."""


@parent_app.step
async def hold(gate: str) -> dict[str, Any]:
    await record_checked_execution(parent_app)
    while not gate_open(gate):  # noqa: ASYNC110 - another process creates the file
        await asyncio.sleep(0.02)
    return {"pid": os.getpid()}


@parent_app.workflow(name="fanout")
async def fanout(ctx: tether.Context, n: int, parent_gate: str, kid_gate: str) -> list[int]:
    children = [await ctx.start_child("kid", {"i": i, "gate": kid_gate}) for i in range(n)]
    await hold(parent_gate)
    return [await child.result() for child in children]


@kid_app.step
async def kid_work(i: int, gate: str) -> dict[str, Any]:
    await record_checked_execution(kid_app)
    while not gate_open(gate):  # noqa: ASYNC110 - another process creates the file
        await asyncio.sleep(0.02)
    return {"value": i * 10, "pid": os.getpid()}


@kid_app.workflow(name="kid")
async def kid(ctx: tether.Context, i: int, gate: str) -> int:
    return int((await kid_work(i, gate))["value"])
