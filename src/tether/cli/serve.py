"""`tether serve`: the HTTP API and web dashboard."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket

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
from tether.errors import StoreNotFound, UserError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port`, or one clear error (a port in use, a host that is not
    this machine's) before anything is announced; uvicorn serves on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        hint = ("another process listens there; stop it or pick another --port"
                if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE
                else "check --host (an address of this machine) and --port")
        raise UserError(f"cannot listen on {host}:{port}: {reason}; {hint}") from None
    sock.set_inheritable(True)
    return sock


@cli.command()
@handle_errors
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind. Any other than loopback "
                             "needs principals (`tether tokens create`)."),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port (0: any free one)."),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
    app: str | None = typer.Option(None, "--app", help=APP_HELP + " (lets the API start its "
                                   "workflows with input checks; optional)"),
    allowed_host: list[str] = typer.Option(
        [], "--allowed-host", help="Another host name the server may be reached by (e.g. the "
        "proxy's); repeatable; '*' allows any. Loopback names and --host are always allowed."),
    auth_header: list[str] = typer.Option(
        [], "--auth-header", help="Header a trusted SSO proxy sets to the signed-in user, e.g. "
        "X-Forwarded-User or X-Forwarded-Email (repeatable); it names a principal"),
    trusted_proxy: list[str] = typer.Option(
        [], "--trusted-proxy", help="Address or network of the reverse proxy whose "
        "--auth-header and X-Forwarded-* headers are believed (repeatable)"),
    metric_label: list[str] = typer.Option(
        [], "--metric-label", help="A run label key /metrics breaks model calls, tokens and "
        "spend down by, e.g. team or tenant (repeatable; at most 100 values each, the rest "
        "count as 'other')"),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
    create: bool = typer.Option(
        False, "--create", help="Create the SQLite store if it does not exist yet (by default "
        "serve refuses: a wrong path would show an empty dashboard)"),
) -> None:
    """Serve the JSON API (/api) and the web dashboard for the store's runs and approvals."""
    import uvicorn

    from tether.access.principals import login_name
    from tether.server import create_app
    from tether.server.auth import Auth

    tether_app = load_app(app, store)
    loopback = is_loopback(host)
    try:
        require_store(tether_app)
        missing = False
    except StoreNotFound as exc:
        if not create:
            raise StoreNotFound(f"{exc}; or pass --create to start with an empty one") from None
        missing = True
    if missing and not loopback:
        raise _unauthenticated(host)  # a store about to be created has no principals
    open_sqlite_now(tether_app)
    configured = tether_app.portal.run(tether_app.store.has_principals())
    if not configured and not loopback:
        raise _unauthenticated(host)
    auth = Auth(
        local_user=login_name() if loopback else None,
        identity_headers=auth_header,
        trusted_proxies=trusted_proxy,
        session_secret=os.environ.get("TETHER_SESSION_SECRET"),
    )
    # Bound before anything is announced: a port in use is one clear error.
    sock = listen_socket(host, port)
    port = sock.getsockname()[1]
    if not configured:
        err_console.print(
            f"[bold yellow]LOCAL MODE:[/] no principals configured; no sign-in, every action is "
            f"recorded as {login_name()}. Loopback only. Set up tokens: "
            "`tether tokens create NAME --role admin`",
            highlight=False, soft_wrap=True,
        )
    err_console.print(f"tether dashboard on http://{host}:{port}/ (Ctrl-C to stop)", highlight=False)
    hosts = [*LOOPBACK, *allowed_host] + ([] if host in ("0.0.0.0", "::") else [host])
    api = create_app(tether_app, allowed_hosts=hosts, auth=auth, metric_labels=metric_label)
    # The /metrics figures also go out as OpenTelemetry metrics when OTEL_EXPORTER_OTLP_* is set.
    from tether.observe.metrics import instrument_metrics

    meters = instrument_metrics(tether_app, metrics=api.state.metrics)
    try:
        config = uvicorn.Config(
            api, host=host, port=port, log_level=log_level,
            # The peer address must be the real TCP peer: trusted-proxy checks depend on it, and
            # uvicorn would otherwise take it from an X-Forwarded-For anyone on loopback can send.
            proxy_headers=False,
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        if meters is not None:
            meters.shutdown()


def _unauthenticated(host: str) -> UserError:
    return UserError(
        f"refusing to serve on {host} without authentication: no principals are configured. "
        "Create one with `tether tokens create NAME --role admin` (then sign in with its "
        "token), or bind 127.0.0.1 for local mode"
    )
