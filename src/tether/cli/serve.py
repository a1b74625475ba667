"""`tether serve`: the HTTP API and web dashboard."""

from __future__ import annotations

import typer

from tether.cli.common import (
    APP_HELP,
    STORE_HELP,
    cli,
    err_console,
    handle_errors,
    load_app,
    open_sqlite_now,
    require_store,
)
from tether.errors import StoreNotFound

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@cli.command()
@handle_errors
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind. The dashboard has no login: "
                             "keep 127.0.0.1 unless an authenticating proxy is in front."),
    port: int = typer.Option(8000, help="TCP port."),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
    app: str | None = typer.Option(None, "--app", help=APP_HELP + " (lets the API start its "
                                   "workflows with input checks; optional)"),
    allowed_host: list[str] = typer.Option(
        [], "--allowed-host", help="Another host name the server may be reached by (e.g. the "
        "proxy's); repeatable; '*' allows any. Loopback names and --host are always allowed."),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
    create: bool = typer.Option(
        False, "--create", help="Create the SQLite store if it does not exist yet (by default "
        "serve refuses: a wrong path would show an empty dashboard)"),
) -> None:
    """Serve the JSON API (/api) and the web dashboard for the store's runs and approvals."""
    import uvicorn

    from tether.server import create_app

    tether_app = load_app(app, store)
    if not create:
        try:
            require_store(tether_app)
        except StoreNotFound as exc:
            raise StoreNotFound(f"{exc}; or pass --create to start with an empty one") from None
    open_sqlite_now(tether_app)
    if host not in LOOPBACK:
        err_console.print(
            f"[yellow]warning:[/] serving on {host}: the dashboard has no authentication; "
            "anyone who can reach this port can signal and cancel runs",
            highlight=False,
        )
    err_console.print(f"tether dashboard on http://{host}:{port}/ (Ctrl-C to stop)", highlight=False)
    hosts = [*LOOPBACK, *allowed_host] + ([] if host in ("0.0.0.0", "::") else [host])
    uvicorn.run(
        create_app(tether_app, allowed_hosts=hosts), host=host, port=port, log_level=log_level
    )
