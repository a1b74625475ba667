"""The app of the schedule end-to-end test: a per-second schedule of a tiny workflow."""

from __future__ import annotations

import os

import tether

app = tether.App(os.environ.get("SCHEDULE_STORE"))


@app.schedule("* * * * * *", overlap="allow", catchup="none")
@app.workflow(name="tick")
async def tick(ctx: tether.Context) -> str:
    return "ok"
