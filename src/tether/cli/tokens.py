"""`tether tokens`: principals of the HTTP API and dashboard, with their roles and tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Table

from tether.cli.common import (
    JSON_HELP,
    STORE_HELP,
    audited,
    cli,
    console,
    err_console,
    handle_errors,
    load_app,
    print_json,
    require_store,
)
from tether.store.base import ROLES, PrincipalRecord

tokens = typer.Typer(
    help="Principals of `tether serve` (viewer, operator, reviewer, admin) and their tokens.",
    no_args_is_help=True,
)
cli.add_typer(tokens, name="tokens")


def _when(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat()


def principal_json(record: PrincipalRecord) -> dict[str, Any]:
    """A principal without any secret (the store keeps only a hash, and not even that is shown)."""
    return {
        "name": record.name,
        "roles": record.roles,
        "categories": record.categories,
        "created_at": _when(record.created_at),
        "created_by": record.created_by,
        "revoked_at": _when(record.revoked_at),
        "active": record.revoked_at is None,
    }


@tokens.command("create")
@handle_errors
def create(
    name: str = typer.Argument(..., help="The principal: a user name or an SSO email"),
    role: list[str] = typer.Option(
        ..., "--role", "-r", help=f"One of {', '.join(ROLES)} (repeatable, or comma-separated)"
    ),
    categories: str | None = typer.Option(
        None, "--categories", help="Risk categories a reviewer may decide, e.g. send,refund "
        "(default: all)"),
    as_json: bool = typer.Option(False, "--json", help='Print {"token": …} for scripts'),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Create a principal and print its token (shown this once; only its hash is stored)."""
    roles = [part for item in role for part in item.split(",")]
    app = load_app(None, store)
    from tether.access.principals import create_principal, login_name

    who = login_name()
    detail = {"roles": roles, "categories": categories}
    with audited(app, "token.create", name, who, detail):
        record, token = app.portal.run(
            create_principal(app.store, name, roles, categories=categories, created_by=who)
        )
    if as_json:
        print_json({"token": token, **principal_json(record)})
        return
    typer.echo(token)
    err_console.print(
        f"created {record.name} ({', '.join(record.roles)}"
        + (f"; categories {', '.join(record.categories)}" if record.categories else "")
        + "). The token above is shown once: use it as `Authorization: Bearer …` or to sign in "
        "to the dashboard.",
        highlight=False,
        soft_wrap=True,
    )


@tokens.command("list")
@handle_errors
def list_(
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Principals with their roles (never their tokens)."""
    app = require_store(load_app(None, store))
    from tether.access.principals import list_principals

    found = app.portal.run(list_principals(app.store))
    if as_json:
        print_json([principal_json(p) for p in found])
        return
    if not found:
        console.print(
            "no principals: `tether serve` runs in local mode on loopback only. Create one with "
            "`tether tokens create NAME --role admin`"
        )
        return
    table = Table(title="Principals")
    for header in ("name", "roles", "categories", "created", "by", "state"):
        table.add_column(header)
    for p in found:
        table.add_row(
            p.name, ", ".join(p.roles), ", ".join(p.categories or []) or "all",
            datetime.fromtimestamp(p.created_at, UTC).strftime("%Y-%m-%d %H:%M"),
            p.created_by or "", "active" if p.revoked_at is None else "revoked",
        )
    console.print(table)


@tokens.command("revoke")
@handle_errors
def revoke(
    name: str = typer.Argument(..., help="The principal whose token stops working"),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Revoke a principal's token: requests with it are refused (401) from now on."""
    app = require_store(load_app(None, store))
    with audited(app, "token.revoke", name):
        from tether.access.principals import revoke_principal

        app.portal.run(revoke_principal(app.store, name))
    typer.echo(f"revoked {name}")
