"""`tether budget RUN`: raise (or set) a run's budget; a run parked on its budget resumes."""

from __future__ import annotations

from typing import Any

import typer

from tether.cli.common import STORE_HELP, cli, handle_errors, load_app, print_json, require_store
from tether.errors import UserError

_LIMITS = ("max_cost_usd", "max_llm_calls", "max_tokens", "max_tool_calls", "max_steps",
           "max_duration")


@cli.command()
@handle_errors
def budget(
    run: str = typer.Argument(..., help="Run id"),
    max_cost_usd: float | None = typer.Option(None, "--max-cost-usd", help="Dollar cap"),
    max_llm_calls: int | None = typer.Option(None, "--max-llm-calls", help="Model calls"),
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="Input plus output tokens"),
    max_tool_calls: int | None = typer.Option(None, "--max-tool-calls", help="Tool executions"),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Journaled operations"),
    max_duration: float | None = typer.Option(
        None, "--max-duration", help="Seconds since the run was created"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run's new budget as JSON"),
    app: str | None = typer.Option(
        None, "--app", help="Use this app's store (module:attribute)"
    ),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Change a run's budget: the limits given replace its own, the others are kept.

    A run waiting on its budget (on_exceed="suspend") becomes runnable again."""
    given: dict[str, Any] = {
        "max_cost_usd": max_cost_usd, "max_llm_calls": max_llm_calls, "max_tokens": max_tokens,
        "max_tool_calls": max_tool_calls, "max_steps": max_steps, "max_duration": max_duration,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        raise UserError(
            "give at least one limit to change, e.g. tether budget RUN --max-cost-usd 5"
        )
    application = require_store(load_app(app, store))
    info = application.get_run(run)  # UnknownRun: one line, exit 2
    if info.finished:
        raise UserError(
            f"run {run} already ended ({info.status}); its budget no longer applies, nothing "
            "changed"
        )
    from tether.engine.budget import Budget

    current = Budget.from_dict(info.budget)
    values = current.to_dict() if current is not None else {}
    values.update(given)
    new = Budget(**values)  # a negative limit: UserError before anything is written
    after = application.raise_budget(run, new)
    if as_json:
        print_json({"run": run, "status": after.status, "budget": after.budget})
        return
    shown = ", ".join(f"{k}={after.budget[k]:g}" for k in _LIMITS if after.budget
                      and after.budget.get(k) is not None)
    resumed = " (resumed: it was waiting on its budget)" if (
        info.waiting_for == "tether.budget" and after.status == "queued") else ""
    typer.echo(f"run {run} budget: {shown or 'unlimited'}; now {after.status}{resumed}")
