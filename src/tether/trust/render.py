"""Text for humans: an approval request with its context, and the trust report.

Both return Rich markup (``[bold]…[/]``) with every value from the run escaped, so they print
well with ``rich.console.Console().print(text)`` and read fine as plain text too.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, cast

from rich.markup import escape

from tether.trust.approvals import Approval
from tether.trust.evidence import TrustReportRow

MAX_ARG_CHARS = 600
MAX_STEP_LINES = 12


def _ago(moment: float | datetime | None) -> str:
    if moment is None:
        return "?"
    seconds = time.time() - (moment.timestamp() if isinstance(moment, datetime) else moment)
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 90:
        text = f"{seconds:.0f}s"
    elif seconds < 5400:
        text = f"{seconds / 60:.0f}m"
    elif seconds < 172800:
        text = f"{seconds / 3600:.0f}h"
    else:
        text = f"{seconds / 86400:.0f}d"
    return f"in {text}" if future else f"{text} ago"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _seconds(value: Any) -> str:
    return "?" if value is None else f"{float(value):.2f}s"


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) > MAX_ARG_CHARS:
        text = text[:MAX_ARG_CHARS] + f"… ({len(text)} chars)"
    return escape(text).replace("\n", "\n      ")


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def _entries(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key)
    if not isinstance(value, list):
        return []
    return [cast(dict[str, Any], v) for v in cast(list[Any], value) if isinstance(v, dict)]


def render_approval(approval: Approval, *, command: str = "tether", store: str | None = None) -> str:
    """The request as a reviewer should see it before deciding: the proposed call and its
    arguments, the checks, the run so far, latency against the node's usual p95, spend against
    the budget, model and prompt versions, and the category's history. The commands to decide
    it are spelt with `command` (e.g. ``./dev tether``) and, given, ``--store STORE``."""
    a = approval
    c = a.context
    lines = [
        f"[bold]Approval {escape(a.id)}[/]  [{'yellow' if a.pending else 'cyan'}]{a.status}[/]"
        f"  run {escape(a.run_id)} ({escape(a.workflow)}), requested {_ago(a.created_at)}",
        f"[bold]{escape(a.agent)}[/] wants to call [bold]{escape(a.tool)}[/]  "
        f"(risk [magenta]{escape(a.category)}[/])",
    ]
    if c.get("reason") or a.reason:
        lines.append(f"  why review: {escape(str(c.get('reason') or a.reason))}")
    lines.append(f"[bold]Arguments[/] ({escape(a.digest[:19])}…):")
    lines += [f"    {escape(k)}: {_value(v)}" for k, v in a.args.items()]
    if a.checks:
        lines.append("[bold]Self-checks[/]:")
        for check in a.checks:
            mark = "[green]pass[/]" if check.passed else "[red]FAIL[/]"
            tail = f" — {escape(check.reason)}" if check.reason else ""
            lines.append(f"    {mark} {escape(check.name)}{tail}")
    totals = _section(c, "totals")
    spend = _section(c, "spend")
    budget = _section(spend, "budget")
    lines.append(
        f"[bold]Run so far[/]: {totals.get('steps', 0)} steps, {totals.get('retries', 0)} "
        f"retries, {totals.get('errors', 0)} errors"
    )
    # The gate's own bookkeeping steps are counted above but not listed: they are noise here.
    listed = [s for s in _entries(c, "steps") if not str(s.get("name", "")).startswith("trust.")]
    if len(listed) > MAX_STEP_LINES:
        lines.append(f"    (the last {MAX_STEP_LINES} of {len(listed)}; `tether show` has all)")
    for step in listed[-MAX_STEP_LINES:]:
        extra = f" x{step['attempts']}" if step.get("attempts", 1) > 1 else ""
        error = f"  [red]{escape(str(step['error'])[:120])}[/]" if step.get("error") else ""
        lines.append(
            f"    #{step['seq']} {escape(str(step['name']))} {step['kind']} {step['status']}"
            f"{extra} {_seconds(step.get('duration'))}{error}"
        )
    node = _section(c, "node")
    if node:
        p95 = node.get("usual_p95")
        usual = (f"usual p95 {_seconds(p95)} over {node.get('samples', 0)} runs"
                 if p95 is not None else "no earlier runs to compare")
        flag = "  [red]slower than usual[/]" if node.get("slow") else ""
        lines.append(
            f"[bold]Node {escape(str(node.get('name')))}[/]: {_seconds(node.get('elapsed'))} of work "
            f"so far (waits left out), {usual}{flag}"
        )
    cost = f"${spend.get('cost_usd', 0):.4f}"
    if budget.get("max_cost_usd") is not None:
        cost += f" of ${budget['max_cost_usd']:.2f}"
    tokens = f"{spend.get('tokens', 0):,}"
    if budget.get("max_tokens") is not None:
        tokens += f" of {budget['max_tokens']:,}"
    calls = f"{spend.get('llm_calls', 0)}"
    if budget.get("max_llm_calls") is not None:
        calls += f" of {budget['max_llm_calls']}"
    unpriced = f", {spend['unpriced_calls']} unpriced" if spend.get("unpriced_calls") else ""
    lines.append(f"[bold]Spend[/]: {tokens} tokens, {calls} model calls, {cost}{unpriced}")
    for version in _entries(c, "versions"):
        model = version.get("response_model") or version.get("request_model") or "?"
        requested = version.get("request_model")
        asked = f" (asked {escape(str(requested))})" if requested and requested != model else ""
        prompt = version.get("prompt_hash")
        lines.append(
            f"    model {escape(str(model))}{asked}"
            + (f", prompt {escape(str(prompt)[:12])}" if prompt else "")
            + (f"  {escape('[' + str(version['node']) + ']')}" if version.get("node") else "")
        )
    history = _section(c, "history")
    lines.append(
        f"[bold]History[/] of {escape(a.category)} for {escape(a.agent)}: "
        f"{history.get('reviews', 0)} reviews, approved {_rate(history.get('approval_rate'))}, "
        f"edited {_rate(history.get('edit_rate'))}, {history.get('rejected', 0)} rejected, "
        f"{history.get('auto', 0)} automatic"
    )
    for past in _entries(history, "last"):
        edited = " (edited)" if past.get("edited") else ""
        why = f": {escape(str(past['reason']))}" if past.get("reason") else ""
        lines.append(
            f"    {past.get('status')}{edited} by {escape(str(past.get('by') or '-'))} "
            f"{_ago(past.get('at'))}{why}"
        )
    if a.pending:
        if a.expires_at is not None:
            lines.append(f"Expires {_ago(a.expires_at)}.")
        who = f" (reviewers: {escape(', '.join(a.reviewers))})" if a.reviewers else ""
        where = f" --store {escape(store)}" if store else ""
        lines.append(
            f"Decide: {escape(command)} approve {escape(a.id)}{where} {escape('[--edit JSON]')} | "
            f"{escape(command)} reject {escape(a.id)}{where} --reason TEXT{who}"
        )
    else:
        by = f" by {escape(a.decided_by)}" if a.decided_by else ""
        when = f" {_ago(a.decided_at)}" if a.decided_at else ""
        lines.append(f"Decision: {a.status}{by}{when}" + (" with edits" if a.edited else ""))
        for name, (before, after) in a.changes.items():
            lines.append(f"    {escape(name)}: {_value(before)}")
            lines.append(f"    {' ' * len(name)}→ {_value(after)}")
    return "\n".join(lines)


def render_report(rows: list[TrustReportRow]) -> str:
    """The trust report as text (the CLI prints a table instead)."""
    if not rows:
        return "No gated tool calls recorded yet."
    lines: list[str] = []
    for row in rows:
        s = row.stats
        lines.append(
            f"[bold]{escape(row.agent)} / {escape(row.category)}[/] ({row.ring or '?'}): "
            f"{s.reviews} reviews, {s.unedited} unedited, {s.edited} edited, {s.rejected} "
            f"rejected, {s.expired} expired, {s.auto} auto ({s.auto_failures} failed later), "
            f"{s.denied} denied — {escape(row.recommendation)}"
        )
        for change in row.changes:
            at = datetime.fromtimestamp(change.created_at, UTC).strftime("%Y-%m-%d %H:%M")
            lines.append(f"    {at} {change.from_ring} → {change.to_ring}: {escape(change.reason)}")
    return "\n".join(lines)
