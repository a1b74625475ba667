"""`tether workers`: the live workers of a store and the runs they hold (the dashboard's
``/workers`` page, and ``GET /api/workers``, in a terminal)."""

from __future__ import annotations

import time

import typer
from rich.table import Table

from tether.cli.common import (
    JSON_HELP,
    STORE_HELP,
    cli,
    console,
    handle_errors,
    load_app,
    print_json,
    require_store,
)
from tether.engine.presence import held_by, worker_fields

HELD_SCAN = 1000
"""At most this many running runs are read to find what each worker holds."""


@cli.command()
@handle_errors
def workers(
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Live workers: host, pid, last heartbeat, the runs each holds, what it serves."""
    app = require_store(load_app(None, store))
    found = app.portal.run(app.store.list_workers())
    running = app.portal.run(app.store.list_runs(status="running", limit=HELD_SCAN))
    held, orphans = held_by(found, running)
    now = time.time()
    if as_json:
        print_json({
            "workers": [{**worker_fields(w, now), "held_runs": [r.id for r in held[w.owner]]}
                        for w in found],
            "orphaned_runs": [r.id for r in orphans],
        })
        return
    if not found:
        console.print("no live worker" + (f"; {len(orphans)} running run(s) wait for their lease "
                                          "to expire" if orphans else ""))
        return
    table = Table(title="live workers")
    for name in ("worker", "host", "pid", "up", "heartbeat", "runs", "serves"):
        table.add_column(name, overflow="fold", justify="right" if name in ("pid", "runs") else "left")
    for w in found:
        late = now - w.last_seen > w.lease_seconds
        beat = f"{max(0.0, now - w.last_seen):.0f}s ago" + (" (late)" if late else "")
        serves = ", ".join(f"{n} v{v}" for n, v in w.workflows) or "-"
        table.add_row(w.name, w.host, str(w.pid), _age(now - w.started_at), beat,
                      str(len(held[w.owner])), serves)
    console.print(table, markup=False)
    if orphans:
        console.print(f"{len(orphans)} running run(s) held by no live worker: taken over when "
                      "their lease expires", markup=False)


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
