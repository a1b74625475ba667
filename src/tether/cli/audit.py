"""`tether audit`: the audit trail of mutations made through the API, dashboard and CLI."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

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


@cli.command()
@handle_errors
def audit(
    principal: str | None = typer.Option(None, "--principal", "-p", help="Only this principal"),
    action: str | None = typer.Option(
        None, "--action", "-a", help="Only this action (run.cancel) or a prefix (run.*)"
    ),
    target: str | None = typer.Option(None, "--target", "-t", help="Only this run/approval/name"),
    since: str | None = typer.Option(None, "--since", help="Only the last 30m, 12h, 7d…"),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="At most this many, newest first"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Who did what, when, to which run or request, and how it ended."""
    from tether.access.audit import audit_json, list_audit

    start = None
    if since is not None:
        from tether.observe.window import parse_duration

        start = time.time() - parse_duration(since)
    app = require_store(load_app(None, store))
    entries = app.portal.run(
        list_audit(app.store, principal=principal, action=action, target=target, since=start,
                   limit=limit)
    )
    if as_json:
        print_json([audit_json(e) for e in entries])
        return
    if not entries:
        console.print("no audit entries match")
        return
    table = Table(title="Audit trail")
    for header in ("when (UTC)", "principal", "action", "target", "outcome", "via", "detail"):
        table.add_column(header, no_wrap=header != "detail")
    for e in entries:
        table.add_row(
            datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%d %H:%M:%S"), e.principal,
            _printable(e.action), _printable(e.target or ""), e.outcome, e.via or "",
            json.dumps(e.detail, sort_keys=True) if e.detail else "",
        )
    # What API clients asked for (a refused request's path, a run id they chose) is text, not
    # Rich markup: "[/bold]" in a target would otherwise stop the listing with a MarkupError.
    console.print(table, markup=False)


def _printable(text: str) -> str:
    """Control characters (an escape sequence in a refused request's path) shown escaped,
    so the trail cannot write to the reader's terminal."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
