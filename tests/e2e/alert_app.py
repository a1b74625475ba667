"""The app of the alert end-to-end tests: a step that can hang, alerts to $ALERT_WEBHOOK, and a
spend limit on tenant=acme."""

from __future__ import annotations

import asyncio
import os

import tether
from tether.observe.limits import SpendLimit, set_spend_limits

app = tether.App(os.environ.get("ALERT_STORE"), lease_seconds=3.0)


@app.step
async def think(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


@app.workflow(name="slow")
async def slow(ctx: tether.Context, seconds: float) -> str:
    return await think(seconds)


app.alerts(
    os.environ.get("ALERT_WEBHOOK"),  # unset: alerts are recorded and listed only
    every=0.3,
    stuck_after=1.0,
    unserved_after=0.0,
    backoff=0.2,
    timeout=float(os.environ.get("ALERT_TIMEOUT", "5")),
    delivery_lease=float(os.environ.get("ALERT_LEASE", "6")),
    changes_every=3600.0,
)
set_spend_limits(app, [SpendLimit("tenant", "acme", max_usd=1.0)])
