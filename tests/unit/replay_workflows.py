"""Workflows whose recorded journals live in tests/fixtures/journals/."""

from __future__ import annotations

import asyncio

import tether

app = tether.App("sqlite:///:memory:")
CALLS: list[str] = []


@app.step
async def lookup(name: str) -> dict[str, str]:
    CALLS.append(f"lookup:{name}")
    return {"name": name, "tier": "gold"}


@app.step
def score(profile: dict[str, str]) -> int:
    CALLS.append(f"score:{profile['name']}")
    return len(profile["name"]) * 10


@app.workflow(name="greet", version="1")
async def greet(ctx: tether.Context, name: str) -> dict[str, object]:
    profile = await lookup(name)
    mine, other = await asyncio.gather(score(profile), score({"name": "x"}))
    when = ctx.now()
    token = ctx.uuid()
    decision = await ctx.wait_for_signal("approval")
    return {
        "profile": profile,
        "scores": [mine, other],
        "at": when.isoformat(),
        "token": str(token),
        "decision": decision,
    }
