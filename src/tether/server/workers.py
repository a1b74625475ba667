"""The live workers and the runs they hold: ``GET /api/workers`` and the page ``/workers``.

Workers come from the registry (`Store.list_workers`, kept by `tether.engine.presence`); the
runs they hold are the ``running`` runs whose lease names them. A running run whose lease names
no live worker is listed apart: its worker died, and another takes it over once the lease
expires.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tether.engine.presence import held_by, worker_fields
from tether.engine.records import RunInfo
from tether.server.pages import REFRESH_SECONDS
from tether.server.rendering import render, tether_app_of
from tether.server.views import run_summary_json
from tether.store.base import WorkerRecord

router = APIRouter(tags=["workers"])

HELD_SCAN = 1000
"""At most this many running runs are read to find what each worker holds."""


async def _snapshot(request: Request) -> tuple[list[WorkerRecord], dict[str, list[RunInfo]], list[RunInfo]]:
    app = tether_app_of(request)
    workers = await app.store.list_workers()
    running = await app.list_runs_async(status="running", limit=HELD_SCAN)
    held, orphans = held_by(workers, running)
    return workers, held, orphans


def worker_json(worker: WorkerRecord, held: list[RunInfo], now: float) -> dict[str, Any]:
    """One live worker as the API returns it."""
    return {**worker_fields(worker, now), "held_runs": [run_summary_json(run) for run in held]}


@router.get("/api/workers")
async def list_workers(request: Request) -> dict[str, Any]:
    """Live workers (oldest first) with the runs they hold, and ``orphaned_runs``: running runs
    whose lease names no live worker (they are taken over when the lease expires)."""
    workers, held, orphans = await _snapshot(request)
    now = time.time()
    return {
        "workers": [worker_json(w, held[w.owner], now) for w in workers],
        "orphaned_runs": [run_summary_json(run) for run in orphans],
    }


@router.get("/workers", response_class=HTMLResponse, include_in_schema=False)
async def workers_page(request: Request) -> HTMLResponse:
    workers, held, orphans = await _snapshot(request)
    now = time.time()
    return await render(
        request,
        "workers.html",
        {
            "workers": [worker_json(w, held[w.owner], now) for w in workers],
            "held": held,
            "orphans": orphans,
            "now": datetime.now(UTC),
            "refresh": REFRESH_SECONDS,
        },
    )
