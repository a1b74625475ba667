"""Two releases of one workflow for the deploy test, loaded by real worker processes with
``tether worker --app tests.e2e.deploy_apps:v1`` (or ``:v2``).

`order` keeps its step names up to the approval in both versions, so a version-1 run can be
forked onto version 2; version 2 ships differently. Every step execution is appended to the
ledger (see `workflows_fixture.record_execution`) so the test counts what ran where.
"""

from __future__ import annotations

from typing import Any

import tether
from tests.e2e.workflows_fixture import record_execution

v1 = tether.App(lease_seconds=1.0)
v2 = tether.App(lease_seconds=1.0)


@v1.step(name="quote")
async def quote_v1(item: str) -> dict[str, Any]:
    record_execution()
    return {"item": item, "price": 10}


@v1.step(name="ship")
async def ship_v1(item: str) -> str:
    record_execution()
    return f"{item} shipped by v1"


@v1.workflow(name="order", version="1")
async def order_v1(ctx: tether.Context, item: str) -> dict[str, Any]:
    quote = await quote_v1(item)
    decision = await ctx.wait_for_signal("approval")
    return {"quote": quote, "decision": decision, "shipped": await ship_v1(item)}


@v2.step(name="quote")
async def quote_v2(item: str) -> dict[str, Any]:
    record_execution()
    return {"item": item, "price": 20}


@v2.step(name="ship")
async def ship_v2(item: str) -> str:
    record_execution()
    return f"{item} shipped by v2"


@v2.workflow(name="order", version="2")
async def order_v2(ctx: tether.Context, item: str) -> dict[str, Any]:
    quote = await quote_v2(item)
    decision = await ctx.wait_for_signal("approval")
    return {"quote": quote, "decision": decision, "shipped": await ship_v2(item)}
