"""`tether alerts`: the alerts workers recorded, with their delivery state; `test` pings the
webhook.

Workers of an App configured with `tether.observe.alerts.configure` (or ``$TETHER_ALERT_WEBHOOK``
under `tether worker`) record and deliver alerts; these commands read the store, so they show
every alert whichever worker found or sent it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from datetime import UTC, datetime

import typer
from rich.table import Table

from tether.cli.common import (
    JSON_HELP,
    STORE_HELP,
    cli,
    console,
    err_console,
    handle_errors,
    load_app,
    print_json,
    require_store,
)
from tether.errors import UserError
from tether.store.base import AlertRecord, NewAlert

alerts_cli = typer.Typer(
    help="Alerts recorded by workers: list (default), test the webhook.",
    no_args_is_help=False,
    invoke_without_command=True,
)
cli.add_typer(alerts_cli, name="alerts")

def _when(moment: float | None) -> str:
    if moment is None:
        return "-"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _state(alert: AlertRecord) -> str:
    if alert.state == "delivered":
        return "[green]delivered[/]"
    if alert.state == "failed":
        return "[bold red]failed[/]"
    if alert.attempts == 0:
        return "[yellow]pending[/]"
    wait = max(0.0, alert.next_attempt_at - time.time())
    return f"[yellow]retrying[/] in {wait:.0f}s"


def _list(store_url: str | None, kind: str | None, state: str | None, since: str | None,
          limit: int, as_json: bool) -> None:
    from tether.observe.alerts import alert_json, list_alerts
    from tether.observe.window import parse_duration

    start = None if since is None else time.time() - parse_duration(since)
    application = require_store(load_app(None, store_url))
    alerts = asyncio.run(
        list_alerts(application, kind=kind, state=state, since=start, limit=limit)
    )
    if as_json:
        print_json([alert_json(a) for a in alerts])
        return
    if not alerts:
        console.print("no alerts (workers record them once alerts are configured: "
                      "tether.observe.alerts.configure(app, webhook=…) or $TETHER_ALERT_WEBHOOK)")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("when", "kind", "subject", "delivery", "attempts", "summary"):
        table.add_column(column, overflow="fold")
    for alert in alerts:
        summary = alert.summary
        if alert.state != "delivered" and alert.last_error:
            summary += f" [dim](last error: {alert.last_error})[/]"
        table.add_row(_when(alert.created_at), alert.kind, alert.subject, _state(alert),
                      str(alert.attempts), summary)
    console.print(table)


@alerts_cli.callback()
@handle_errors
def alerts(
    ctx: typer.Context,
    kind: str | None = typer.Option(None, "--kind", help="stuck, change, spend, unserved, test"),
    state: str | None = typer.Option(None, "--state", help="pending, delivered, failed"),
    since: str | None = typer.Option(None, "--since", help="Recorded within: 30m, 12h, 7d…"),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many, newest first"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """List alerts, newest first: kind, subject, delivery state, attempts (also `list`)."""
    if ctx.invoked_subcommand is None:
        _list(store, kind, state, since, limit, as_json)


@alerts_cli.command("list")
@handle_errors
def list_alerts(
    kind: str | None = typer.Option(None, "--kind", help="stuck, change, spend, unserved, test"),
    state: str | None = typer.Option(None, "--state", help="pending, delivered, failed"),
    since: str | None = typer.Option(None, "--since", help="Recorded within: 30m, 12h, 7d…"),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many, newest first"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """List alerts, newest first: kind, subject, delivery state, attempts."""
    _list(store, kind, state, since, limit, as_json)


@alerts_cli.command("test")
@handle_errors
def send_test(
    webhook: str | None = typer.Option(
        None, "--webhook", help="URL to send to (default: $TETHER_ALERT_WEBHOOK)"
    ),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Record a test alert and send it to the webhook now, from this process, once; exit 1
    when the receiver did not answer 2xx (the alert is then listed as failed)."""
    from tether.observe.alerts import WEBHOOK_ENV, AlertConfig, watcher_name, webhook_host
    from tether.observe.webhook import Webhook

    url = webhook or os.environ.get(WEBHOOK_ENV, "").strip()
    if not url:
        raise UserError(f"no webhook to test: give --webhook URL or set ${WEBHOOK_ENV}")
    config = AlertConfig(webhook=url, max_attempts=1)
    # Chat webhooks carry their secret in the path: only the host is stored and printed.
    where = webhook_host(url)
    # The outcome is printed below; the delivery log line would say it twice.
    logging.getLogger("tether.alerts").setLevel(logging.CRITICAL)
    application = require_store(load_app(None, store))

    async def send() -> tuple[AlertRecord, str | None]:
        store_ = application.store
        alert = NewAlert(
            key=f"test:{uuid.uuid4().hex}", kind="test", subject="webhook",
            summary=f"test alert from `tether alerts test` to {where}",
        )
        recorded = await store_.record_alert(alert)
        assert recorded is not None
        sender = Webhook(store_, config, watcher_name())
        try:
            claimed = await store_.claim_alerts(
                sender.owner, limit=1, lease_seconds=config.delivery_lease, only=recorded.id
            )
            delivered = bool(claimed) and await sender.send(claimed[0])
        finally:
            await sender.close()
        after = next(a for a in await store_.list_alerts(kind="test", limit=50)
                     if a.id == recorded.id)
        return after, None if delivered else (after.last_error or "not sent")

    alert, error = asyncio.run(send())
    if error is not None:
        err_console.print(f"[bold red]error:[/] test alert {alert.id} not accepted by {where}: "
                          f"{error}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"test alert {alert.id} delivered to {where}", highlight=False)
