"""Commands about runs: start, runs, show, signal, cancel, fork."""

from __future__ import annotations

from typing import Any

import typer

from tether.cli.common import (
    APP_HELP,
    JSON_HELP,
    STORE_HELP,
    audited,
    cli,
    console,
    err_console,
    handle_errors,
    load_app,
    parse_json,
    print_json,
    require_store,
)
from tether.cli.render import run_detail, run_summary, run_view, runs_table
from tether.errors import TetherError, UserError

STORE_APP_HELP = (
    "Use this app's store (module:attribute), for apps that name their store in code"
)


def parse_labels(pairs: list[str] | None) -> dict[str, str]:
    """``["team=sales", "tenant=acme"]`` → ``{"team": "sales", "tenant": "acme"}``."""
    labels: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise UserError(f"bad label {pair!r}: expected key=value, e.g. --label team=sales")
        labels[key] = value
    return labels


def parse_input(text: str | None) -> dict[str, Any]:
    value = parse_json(text, "--input")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(
            f"--input must be a JSON object of the workflow's arguments, e.g. "
            f'\'{{"who": "acme"}}\'; got {type(value).__name__}: {text}'
        )
    return value  # type: ignore[return-value]


@cli.command()
@handle_errors
def start(
    workflow: str = typer.Argument(..., help="Workflow name"),
    app: str | None = typer.Option(
        None,
        "--app",
        help=APP_HELP + ". Without it the run is queued by name and pinned by the first "
        "worker that has the workflow.",
    ),
    input: str | None = typer.Option(None, "--input", "-i", help="Input as a JSON object"),
    label: list[str] | None = typer.Option(
        None, "--label", "-l", help="Cost-attribution label key=value (repeatable)"
    ),
    run_id: str | None = typer.Option(
        None, "--run-id", help="Run id to use; starting twice with one id is idempotent"
    ),
    started_by: str | None = typer.Option(
        None,
        "--as",
        help="Who starts the run (default: your OS login name); that identity cannot approve "
        "the run's own approval requests",
    ),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Queue a run of WORKFLOW and print its id."""
    kwargs = parse_input(input)
    labels = parse_labels(label)
    from tether.access.principals import login_name

    who = started_by or login_name()
    application = load_app(app, store)
    with audited(application, "run.start", run_id, who, {"workflow": workflow}) as entry:
        handle = application.start(
            workflow, kwargs, run_id=run_id, labels=labels, started_by=who
        )
        entry.target = handle.id
    typer.echo(handle.id)
    # Not an error: workers may start after the run (deploy order), and the run is durable.
    definition = application.get_workflow(workflow)
    warn_if_unserved(application, handle.id, workflow, definition.version if definition else None)


def warn_if_unserved(application: Any, run_id: str, workflow: str, version: str | None) -> None:
    """One warning line on stderr when no live worker serves what a new run needs."""
    from tether.engine.presence import coverage

    try:
        gap = application.portal.run(coverage(application.store)).gap(workflow, version, run_id)
    except TetherError:
        return
    if gap is not None:
        err_console.print(
            f"[yellow]warning:[/] {gap}; run {run_id} waits until one does",
            highlight=False,
            soft_wrap=True,
        )


def health_of(application: Any, runs: list[Any]) -> dict[str, Any]:
    """Stuck-or-slow verdicts of the running runs among `runs` (one baseline query), and of
    the queued and waiting ones whether a live worker serves them (one registry query)."""
    pending = [info for info in runs if info.status in ("running", "queued", "waiting")]
    if not pending:
        return {}
    from tether.observe.health import assess_runs

    verdicts = application.portal.run(assess_runs(application, pending))
    return {info.id: verdict for info, verdict in zip(pending, verdicts, strict=True)}


@cli.command("runs")
@handle_errors
def list_runs(
    status: str | None = typer.Option(None, "--status", "-s", help="Only runs with this status"),
    workflow: str | None = typer.Option(None, "--workflow", "-w", help="Only this workflow"),
    label: list[str] | None = typer.Option(
        None, "--label", "-l", help="Only runs carrying this label key=value (repeatable)"
    ),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="At most this many, newest first"),
    degraded: bool = typer.Option(
        False, "--degraded", help="Only runs that skipped an optional node or took a fallback"
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    app: str | None = typer.Option(None, "--app", help=STORE_APP_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """List runs, newest first."""
    labels = parse_labels(label) or None
    application = require_store(load_app(app, store))
    runs = application.list_runs(
        status=status, workflow=workflow, labels=labels, limit=limit,
        degraded=True if degraded else None,
    )
    verdicts = health_of(application, runs)
    if as_json:
        print_json([run_summary(info, verdicts.get(info.id)) for info in runs])
    elif not runs:
        console.print("no runs match" if (status or workflow or labels or degraded) else "no runs yet")
    else:
        console.print(runs_table(runs, verdicts), markup=False)  # ids and labels are text


@cli.command()
@handle_errors
def show(
    run: str = typer.Argument(..., help="Run id"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    app: str | None = typer.Option(None, "--app", help=STORE_APP_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Show a run: status, timings, usage and its step journal."""
    application = require_store(load_app(app, store))
    info = application.get_run(run)
    verdict = health_of(application, [info]).get(info.id)
    if as_json:
        print_json(run_detail(info, verdict))
    else:
        console.print(run_view(info, verdict), markup=False)  # ids and labels are text


@cli.command()
@handle_errors
def signal(
    run: str = typer.Argument(..., help="Run id"),
    name: str = typer.Argument(..., help="Signal name the run waits for (or will wait for)"),
    data: str | None = typer.Option(None, "--data", "-d", help="Payload as JSON"),
    app: str | None = typer.Option(None, "--app", help=STORE_APP_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Send a signal to a run's mailbox; a run waiting for it becomes runnable."""
    payload = parse_json(data, "--data")
    application = require_store(load_app(app, store))
    with audited(application, "run.signal", run, detail={"name": name}):
        application.signal(run, name, payload)
    status = application.get_run(run).status
    typer.echo(f"signal {name!r} delivered to run {run} (now {status})")


@cli.command()
@handle_errors
def cancel(
    run: str = typer.Argument(..., help="Run id"),
    reason: str = typer.Option("cancelled from the command line", "--reason", help="Why"),
    app: str | None = typer.Option(None, "--app", help=STORE_APP_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Cancel a run: a queued or waiting one at once, a running one within about half a second.

    A running `async` step is interrupted (its cleanup runs); a thread step is abandoned."""
    application = require_store(load_app(app, store))
    before = application.get_run(run)
    if before.finished:
        typer.echo(f"run {run} already ended ({before.status}); nothing to cancel")
        return
    children = [c for c in before.children if not application.get_run(c).finished]
    with audited(application, "run.cancel", run, detail={"reason": reason}):
        info = application.cancel(run, reason)
    family = (f", with its {len(children)} unfinished child run{'s' if len(children) != 1 else ''}"
              if children else "")
    if info.status == "cancelled":
        typer.echo(f"run {run} cancelled{family}")
    elif info.finished:
        typer.echo(f"run {run} ended ({info.status}) before the cancel reached it")
    else:
        typer.echo(f"run {run}: cancel requested; the worker holding it stops it within about half a "
                    f"second (now {info.status}){family}")


@cli.command()
@handle_errors
def fork(
    run: str = typer.Argument(..., help="Run id to fork"),
    from_step: int | None = typer.Option(
        None,
        "--from-step",
        help="First step to execute again; completed steps before it are reused (default: "
        "just past the last journal entry — keep everything completed, redo the rest)",
    ),
    version: str | None = typer.Option(
        None,
        "--version",
        help="Run the rest on this workflow version; the new run replaces the source (its "
        "unread signals move over, the source is cancelled)",
    ),
    app: str | None = typer.Option(None, "--app", help=STORE_APP_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Start a new run that reuses a run's journal before a step; print its id.

    With --version it runs the rest on another workflow version (to move a run a deploy
    stranded)."""
    application = require_store(load_app(app, store))
    detail = {"from_step": from_step, "version": version}
    with audited(application, "run.fork", run, detail=detail) as entry:
        from tether.access.principals import login_name

        handle = application.fork(run, from_step, version=version, started_by=login_name())
        entry.detail["run"] = handle.id
    typer.echo(handle.id)
    forked = application.get_run(handle.id)
    warn_if_unserved(application, handle.id, forked.workflow, forked.version)
