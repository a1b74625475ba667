"""`tether prune`: delete old finished runs with their journals and mailboxes (retention)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import typer

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
from tether.errors import UserError

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` as a timedelta."""
    match = _AGE.match(text.lower())
    if match is None:
        raise UserError(
            f"--older-than {text!r} is not an age; use a number and a unit: 30d, 12h, 90m, 2w"
        )
    amount, unit = float(match.group(1)), match.group(2)
    return timedelta(**{_UNITS[unit]: amount})


@cli.command()
@handle_errors
def prune(
    older_than: str = typer.Option(
        ..., "--older-than", help="Delete runs that finished longer ago than this (30d, 12h, 2w)"
    ),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Delete finished runs older than --older-than, with their journals and signals.

    Only succeeded, failed, refused and cancelled runs: queued, running and waiting runs are
    never touched."""
    age = parse_age(older_than)
    app = require_store(load_app(None, store))
    try:
        cutoff = datetime.now(UTC) - age
        deleted = app.prune(age)
    finally:
        app.close()
    if as_json:
        print_json({"deleted": deleted, "finished_before": cutoff.isoformat()})
    else:
        console.print(
            f"pruned {deleted} run(s) that finished before {cutoff:%Y-%m-%d %H:%M:%S} UTC"
        )
