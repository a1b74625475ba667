"""`tether schedules`: list, pause, resume, trigger and delete cron schedules.

Schedules are declared in code (`app.schedule`) and saved in the store by workers; these
commands act on the stored ones, so a pause holds across restarts and deploys. A deleted
schedule that code still declares comes back when a worker of that code starts.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Table

from tether.cli.common import (
    APP_HELP,
    JSON_HELP,
    STORE_HELP,
    cli,
    console,
    handle_errors,
    load_app,
    print_json,
    require_store,
)
from tether.errors import UserError

schedules_cli = typer.Typer(
    help="Cron schedules: list (default), pause, resume, trigger now, delete.",
    no_args_is_help=False,
    invoke_without_command=True,
)
cli.add_typer(schedules_cli, name="schedules")


def _when(moment: float | None) -> str:
    if moment is None:
        return "-"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _row(record: Any) -> dict[str, Any]:
    return {
        "name": record.name, "cron": record.cron, "timezone": record.timezone,
        "workflow": record.workflow, "paused": record.paused, "overlap": record.overlap,
        "catchup": record.catchup, "next_at": _when(None if record.paused else record.next_at),
        "last_at": _when(record.last_at), "last_run_id": record.last_run_id,
    }


def _list(application: Any, as_json: bool) -> None:
    records = asyncio.run(application.store.list_schedules())
    rows = [_row(r) for r in records]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no schedules (declare one with app.schedule(...); workers save it)")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("name", "cron", "workflow", "next", "last run"):
        table.add_column(column, overflow="fold")
    for row in rows:
        state = "[yellow]paused[/]" if row["paused"] else row["next_at"]
        table.add_row(row["name"], f"{row['cron']} ({row['timezone']})", row["workflow"],
                      state, row["last_run_id"] or "-")
    console.print(table)


@schedules_cli.callback()
@handle_errors
def schedules(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """List the stored schedules (also `tether schedules list`)."""
    if ctx.invoked_subcommand is None:
        _list(require_store(load_app(None, store)), as_json)


@schedules_cli.command("list")
@handle_errors
def list_schedules(
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """List the stored schedules: cron, workflow, next tick, last run."""
    _list(require_store(load_app(None, store)), as_json)


def _set_paused(name: str, store: str | None, paused: bool) -> None:
    application = require_store(load_app(None, store))
    record = asyncio.run(application.store.set_schedule_paused(name, paused))
    if record is None:
        raise UserError(f"no schedule named {name!r}; `tether schedules` lists them")
    console.print(f"schedule {name} {'paused' if paused else 'resumed'}", highlight=False)


@schedules_cli.command()
@handle_errors
def pause(
    name: str = typer.Argument(..., help="Schedule name"),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Stop starting runs for this schedule (kept across worker restarts)."""
    _set_paused(name, store, True)


@schedules_cli.command()
@handle_errors
def resume(
    name: str = typer.Argument(..., help="Schedule name"),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Start runs for this schedule again (its catch-up policy covers the paused ticks)."""
    _set_paused(name, store, False)


@schedules_cli.command()
@handle_errors
def trigger(
    name: str = typer.Argument(..., help="Schedule name"),
    app: str | None = typer.Option(None, "--app", help=APP_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Start one run of the schedule now, outside its ticks; prints the run id."""
    from tether.engine.schedules import Scheduler

    application = require_store(load_app(app, store))
    run_id = asyncio.run(Scheduler(application).trigger(name))
    typer.echo(run_id)


@schedules_cli.command()
@handle_errors
def delete(
    name: str = typer.Argument(..., help="Schedule name"),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Delete a stored schedule (code that still declares it brings it back on worker start)."""
    application = require_store(load_app(None, store))
    if not asyncio.run(application.store.delete_schedule(name)):
        raise UserError(f"no schedule named {name!r}; `tether schedules` lists them")
    console.print(f"schedule {name} deleted", highlight=False)
