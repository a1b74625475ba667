"""`tether stats` and `tether cost`: figures and spend read from the journal."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
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

if TYPE_CHECKING:
    from tether.observe.attribution import CostRow
    from tether.observe.changes import Change
    from tether.observe.stats import StatsRow


def _window(since: str) -> tuple[float, float]:
    until = time.time()
    from tether.observe.window import parse_duration

    return until - parse_duration(since), until


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _dimension_columns(table: Table, dims: list[str], groups: list[dict[str, str | None]]) -> None:
    # The group names are what the reader looks for: never squeeze them into an ellipsis.
    for name in dims:
        width = max([len(name), *(len(g.get(name) or "-") for g in groups)])
        table.add_column(name, no_wrap=True, min_width=width)


@cli.command()
@handle_errors
def stats(
    by: str = typer.Option("node", "--by", help="Group by node, model, version (prompt hash), "
                           "app_version, workflow, step, or a label: label:<key>"),
    since: str = typer.Option("7d", "--since", help="Window ending now: 30m, 12h, 7d…"),
    changes: bool = typer.Option(False, "--changes", help="Flag nodes whose latency, cost per "
                                 "call or failure rate moved between fingerprints"),
    window: bool = typer.Option(False, "--window", help="With --changes: also compare the "
                                "first half of the window with the second"),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Runs, calls, p50/p95 latency, failures, refusals, retries, tokens and cost per group."""
    start, end = _window(since)
    app = require_store(load_app(None, store))
    if changes:
        from tether.observe.changes import DEFAULT_DIMENSIONS, Thresholds, detect_changes

        dims = (*DEFAULT_DIMENSIONS, "window") if window else DEFAULT_DIMENSIONS
        found = asyncio.run(
            detect_changes(app, since=start, until=end, dimensions=dims, thresholds=Thresholds())
        )
        _print_changes(found, since, json_output)
        return
    from tether.observe.stats import stats_report

    rows = asyncio.run(stats_report(app, by, since=start, until=end))
    _print_stats(rows, since, json_output, by)


def _print_stats(rows: list[StatsRow], since: str, json_output: bool, by: str = "node") -> None:
    if json_output:
        print_json({"since": since, "rows": [r.to_dict() for r in rows]})
        return
    if not rows:
        if by == "node":  # plain workflow steps belong to no agent node
            console.print(f"no agent node ran in the last {since}; workflow steps: --by workflow "
                          "or --by step")
        else:
            console.print(f"no steps in the last {since}")
        return
    for table in stats_tables(rows, since, console.width):
        console.print(table)


_ALWAYS = ("runs", "calls", "p50 s", "p95 s", "fail %")
_SPEND = ("tokens", "cost $", "$/call", "$/run")
_NOTHING = {"0", "-", "0.0", "0.0000"}


def stats_tables(rows: list[StatsRow], since: str, width: int) -> list[Table]:
    """The stats as tables no wider than `width` where possible. Columns that are zero in every
    group are left out and named under the table; if the rest is still too wide, spend goes to
    a table of its own. A number is never cut or wrapped (a header may wrap)."""
    cells: list[dict[str, str]] = []
    for r in rows:
        unpriced = f" (+{r.unpriced_calls} unpriced)" if r.unpriced_calls else ""
        cells.append({
            "runs": str(r.runs), "calls": str(r.calls or r.steps), "p50 s": _fmt(r.p50),
            "p95 s": _fmt(r.p95),
            "fail %": _fmt(None if r.failure_rate is None else 100 * r.failure_rate, 1),
            "refused": str(r.refusals), "retries": str(r.retries),
            "queued s": _fmt(r.queued_seconds, 1), "rate wait s": _fmt(r.rate_wait_seconds, 1),
            "tokens": str(r.input_tokens + r.output_tokens),
            "cost $": f"{r.cost_usd:.4f}{unpriced}", "$/call": _fmt(r.cost_per_call, 6),
            "$/run": _fmt(r.cost_per_run, 4),
        })
    names = list(cells[0])
    empty = [n for n in names if n not in _ALWAYS and all(c[n] in _NOTHING for c in cells)]
    shown = [n for n in names if n not in empty]
    note = f"none in any group: {', '.join(empty)}" if empty else None

    def table(columns: list[str], title: str, caption: str | None) -> Table:
        t = Table(title=title, caption=caption)
        _dimension_columns(t, list(rows[0].group), [r.group for r in rows])
        for name in columns:
            # As wide as its longest number (never cut) and its header's longest word (a header
            # wraps at spaces).
            least = max(*(len(c[name]) for c in cells), *(len(w) for w in name.split()))
            t.add_column(name, justify="right", min_width=least, overflow="fold")
        for r, row in zip(rows, cells, strict=True):
            t.add_row(*[v or "-" for v in r.group.values()], *[row[n] for n in columns])
        return t

    def fits(columns: list[str]) -> bool:
        return Console(width=10_000).measure(table(columns, "", None)).minimum <= width

    # All in one table if it fits; else as many columns per table as fit, spend apart.
    groups: list[list[str]] = []
    if fits(shown):
        groups.append(shown)
    else:
        for part in ([n for n in shown if n not in _SPEND], [n for n in shown if n in _SPEND]):
            current: list[str] = []
            for name in part:
                if current and not fits([*current, name]):
                    groups.append(current)
                    current = []
                current.append(name)
            if current:
                groups.append(current)
    titles = [f"last {since}"] + [f"last {since}, continued"] * (len(groups) - 1)
    return [table(g, title, note if i == len(groups) - 1 else None)
            for i, (g, title) in enumerate(zip(groups, titles, strict=True))]


def _print_changes(found: list[Change], since: str, json_output: bool) -> None:
    if json_output:
        print_json({"since": since, "changes": [c.to_dict() for c in found]})
        return
    if not found:
        console.print(f"no change flagged in the last {since}")
        return
    for change in found:
        console.print(f"[bold yellow]changed[/] {change.describe()}", highlight=False)


@cli.command()
@handle_errors
def cost(
    by: str = typer.Option("team,model", "--by", help="Label keys and/or model, provider, "
                           "node, workflow, version"),
    since: str = typer.Option("7d", "--since", help="Window ending now: 30m, 12h, 7d…"),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Model spend by owner and model: leaf model calls only, unpriced calls counted apart."""
    start, end = _window(since)
    app = require_store(load_app(None, store))
    from tether.observe.attribution import cost_report

    rows = asyncio.run(cost_report(app, by, since=start, until=end))
    _print_cost(rows, since, json_output)


def _print_cost(rows: list[CostRow], since: str, json_output: bool) -> None:
    total = sum(r.cost_usd for r in rows)
    unpriced = sum(r.unpriced_calls for r in rows)
    overshoot = sum(r.overshoot_usd for r in rows)
    cut_calls = sum(r.cut_calls for r in rows)
    cut_usd = sum(r.cut_usd for r in rows)
    lost = sum(r.lost_sends for r in rows)
    if json_output:
        print_json({
            "since": since,
            "rows": [r.to_dict() for r in rows],
            "total_usd": round(total, 10),
            "unpriced_calls": unpriced,
            "overshoot_usd": round(overshoot, 10),
            "cut_calls": cut_calls,
            "cut_usd": round(cut_usd, 10),
            "lost_sends": lost,
        })
        return
    if not rows:
        console.print(f"no model calls in the last {since}")
        return
    table = Table(title=f"model spend, last {since}")
    dims = list(rows[0].group)
    _dimension_columns(table, dims, [r.group for r in rows])
    for name in ["calls", "unpriced", "in tokens", "out tokens", "cost $"]:
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(*[v or "-" for v in r.group.values()], str(r.calls), str(r.unpriced_calls),
                      str(r.input_tokens), str(r.output_tokens), f"{r.cost_usd:.6f}")
    console.print(table)
    note = f"; {unpriced} unpriced call(s) not included (unknown model)" if unpriced else ""
    if overshoot:
        note += (f"; ${overshoot:.6f} of it beyond the calls' reservations (responses longer "
                 "than the bound reserved against budgets and spend limits)")
    console.print(f"total ${total:.6f}{note}", highlight=False)
    if cut_calls:
        # Apart from the journaled spend: sent, maybe billed, never journaled; a worst case.
        console.print(
            f"cut by crashes (not journaled, worst case): up to ${cut_usd:.6f} more in "
            f"{cut_calls} call(s) sent by workers that died, stopped or lost their run "
            "mid-call and sent again; a provider may have billed them. Not included above:",
            highlight=False)
        for r in rows:
            if r.cut_calls:
                group = ", ".join(v or "-" for v in r.group.values())
                console.print(f"  {group}: {r.cut_calls} call(s), up to ${r.cut_usd:.6f}",
                              highlight=False)
    if lost:
        console.print(
            f"and {lost} call(s) of runs without a budget or spend limit were in flight on a "
            "worker lost mid-call (its last heartbeat): maybe sent and billed once more, cost "
            "unknown. A budget on those runs would record each call's worst case.",
            highlight=False)
