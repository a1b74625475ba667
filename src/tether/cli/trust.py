"""Commands of the trust layer: approvals, approve, reject, trust."""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from tether.cli.common import (
    APP_HELP,
    JSON_HELP,
    STORE_HELP,
    audited,
    cli,
    console,
    handle_errors,
    load_app,
    parse_json,
    print_json,
    redact_url,
    require_store,
)
from tether.errors import UserError

if TYPE_CHECKING:
    from tether.trust.approvals import Approval
    from tether.trust.evidence import TrustReportRow

AS_HELP = "Reviewer name recorded with the decision (default: $TETHER_REVIEWER, else your login)"


def reviewer_name(given: str | None) -> str:
    """The reviewer: ``--as``, else ``$TETHER_REVIEWER``, else the login name."""
    name = given or os.environ.get("TETHER_REVIEWER")
    if not name:
        try:
            name = getpass.getuser()
        except Exception:  # no login name (containers): the user must say who they are
            name = ""
    if not name:
        raise UserError("cannot tell who is deciding; pass --as NAME or set $TETHER_REVIEWER")
    return name


def approval_json(approval: Approval) -> dict[str, Any]:
    data = asdict(approval)
    data["checks"] = [asdict(c) for c in approval.checks]
    data["changes"] = {k: {"proposed": a, "approved": b} for k, (a, b) in approval.changes.items()}
    return data


def report_json(row: TrustReportRow) -> dict[str, Any]:
    return {
        "agent": row.agent,
        "category": row.category,
        "ring": row.ring,
        **row.stats.to_dict(),
        "recommendation": row.recommendation,
        "changes": [asdict(c) for c in row.changes],
    }


@cli.command()
@handle_errors
def approvals(
    approval_id: str | None = typer.Argument(None, help="Show only this request"),
    status: str = typer.Option(
        "pending", "--status", "-s", help="pending, approved, rejected, expired, or all"
    ),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="At most this many, newest first"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Approval requests with the context a reviewer needs (pending ones by default)."""
    application = require_store(load_app(None, store))
    if approval_id is not None:
        found = [application.get_approval(approval_id)]
    else:
        found = application.approvals(status=None if status == "all" else status, limit=limit)
    if as_json:
        print_json([approval_json(a) for a in found])
        return
    if not found:
        console.print("no pending approval requests" if status == "pending" else "none")
        return
    for index, approval in enumerate(found):
        if index:
            console.print(Rule())
        from tether.trust.render import render_approval

        console.print(render_approval(approval, store=redact_url(store) if store else None),
                      highlight=False)


@cli.command()
@handle_errors
def approve(
    approval_id: str = typer.Argument(..., help="Approval request id (see `tether approvals`)"),
    reviewer: str | None = typer.Option(None, "--as", help=AS_HELP),
    edit: str | None = typer.Option(
        None, "--edit", "-e", help='Replace arguments, as JSON: \'{"body": "…"}\''
    ),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Approve a request (optionally with edited arguments); the run resumes."""
    edits = parse_json(edit, "--edit")
    if edits is not None and not isinstance(edits, dict):
        raise UserError('--edit must be a JSON object of argument names to values, e.g. '
                        '\'{"body": "new text"}\'')
    who = reviewer_name(reviewer)
    application = require_store(load_app(None, store))
    action = "approval.edit" if edits else "approval.approve"
    detail = {"edits": sorted(edits)} if edits else None
    with audited(application, action, approval_id, who, detail):
        approval = application.approve(approval_id, reviewer=who, edits=edits)
    changed = f" with edits to {', '.join(approval.changes)}" if approval.changes else ""
    console.print(
        f"approved {approval.id}{changed} as {approval.decided_by}; run {approval.run_id} "
        f"resumes and calls {approval.tool}",
        highlight=False,
    )


@cli.command()
@handle_errors
def reject(
    approval_id: str = typer.Argument(..., help="Approval request id (see `tether approvals`)"),
    reason: str = typer.Option(..., "--reason", "-r", help="Why; the agent reads it to revise"),
    reviewer: str | None = typer.Option(None, "--as", help=AS_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Reject a request; the reason goes back to the agent."""
    who = reviewer_name(reviewer)
    application = require_store(load_app(None, store))
    with audited(application, "approval.reject", approval_id, who, {"reason": reason}):
        approval = application.reject(approval_id, reviewer=who, reason=reason)
    console.print(
        f"rejected {approval.id} as {approval.decided_by}; run {approval.run_id} resumes "
        f"and its agent gets the reason",
        highlight=False,
    )


@cli.command()
@handle_errors
def trust(
    app: str | None = typer.Option(
        None, "--app", help=APP_HELP + ". With it, rings come from the app's policy."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Evidence per agent and category, and whether to widen or narrow its ring.

    Reviews, edits, rejections, automatic actions and their later failures."""
    rows = require_store(load_app(app, store)).trust_report()
    if as_json:
        print_json([report_json(r) for r in rows])
        return
    if not rows:
        console.print("no gated tool calls recorded yet")
        return
    console.print(trust_table(rows))
    for row in rows:
        for change in row.changes:
            console.print(
                f"{row.agent}/{row.category}: {change.from_ring} -> {change.to_ring} "
                f"({change.reason})",
                highlight=False,
            )


def trust_table(rows: Sequence[TrustReportRow]) -> Table:
    """The evidence table, narrow enough for 80 columns: identifiers are never cut (agent and
    category each get a line), the counts share two columns, the recommendation wraps."""
    table = Table(
        title="Trust evidence", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
        pad_edge=False, padding=(0, 1), collapse_padding=True,
    )
    table.add_column("agent / category", no_wrap=True)
    table.add_column("ring", no_wrap=True)
    table.add_column("reviews\nok/edit/rej/exp", justify="right", no_wrap=True)
    table.add_column("auto\n(failed)", justify="right", no_wrap=True)
    table.add_column("denied", justify="right", no_wrap=True)
    table.add_column("recommendation", overflow="fold")
    for row in rows:
        s = row.stats
        table.add_row(
            Text.assemble(row.agent, "\n", (row.category, "dim")),
            row.ring or "?",
            f"{s.reviews}: {s.unedited}/{s.edited}/{s.rejected}/{s.expired}",
            f"{s.auto} ({s.auto_failures})" if s.auto_failures else str(s.auto),
            str(s.denied),
            row.recommendation,
        )
    return table
