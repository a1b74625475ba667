"""The app of the queue end-to-end test: a queue with a per-key limit, and a job that looks
(through the store) at how many runs of its tenant are running while it runs."""

from __future__ import annotations

import asyncio
from typing import Any

import tether

app = tether.App()
app.queue("tenants", concurrency=4, per_key=2)


@app.step
async def look(key: str, pause: float) -> dict[str, Any]:
    seen: list[int] = []
    for _ in range(3):
        mine = await app.store.list_runs(status="running", labels={"tenant": key}, limit=100)
        everyone = await app.store.list_runs(status="running", limit=100)
        seen.append(len(mine) * 1000 + len(everyone))
        await asyncio.sleep(pause / 3)
    return {"key": max(s // 1000 for s in seen), "all": max(s % 1000 for s in seen)}


@app.workflow(name="tenant_job")
async def tenant_job(ctx: tether.Context, pause: float) -> dict[str, Any]:
    return await look(ctx.labels["tenant"], pause)
