"""Child runs: a workflow that starts another workflow as a run of its own and waits for it.

A child run is created inside a journaled ``child`` step of its parent, under an id derived
from the parent's (``<parent id>.<seq>``) with ``ON CONFLICT DO NOTHING``: a parent that is
resumed — after a crash, on another worker — finds the step journaled, or runs it again and
finds the child already there. A child is never started twice.

When a child ends, its worker sends the parent the signal ``tether.child.<child id>`` carrying
the outcome (status, output, error and what the child spent); the parent's wait for it is an
ordinary durable wait, so a parent waiting for children holds no worker. A parent that missed
the signal (the child's worker died between ending the run and sending it) looks at the child
itself when it wakes, and it wakes at least every `CHILD_RECHECK` seconds while it waits.

The child inherits the parent's labels (its spend is attributed to whoever called the parent;
`tether cost --by workflow` still splits it), and gets as its budget what is left of the
parent's; what it spent is charged to the parent's ledger when the parent takes its outcome.
Cancelling a parent cancels its children (`App.cancel`): those in its journal at once, the
rest — a start the cancel cut short, whose child exists but is not journaled, or one made after
`App.cancel` read the journal — when the parent's worker ends it; a child claimed after its
parent was cancelled is cancelled instead of run.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import Any, Protocol, cast

from tether.engine.budget import Budget, Usage
from tether.errors import error_from_record
from tether.store.base import FINISHED_STATUSES, RunRecord, StepRecord, Store

CHILD_SIGNAL = "tether.child."
"""Prefix of the signal a child's end sends its parent (followed by the child's id)."""
CHILD_KIND = "child"
"""Journal kind of the step that starts a child."""
CHILD_WAIT_KIND = "child_wait"
"""Journal kind of the wait for a child's outcome; its output is `outcome_payload`."""
CHILD_RECHECK = 60.0
"""A waiting parent wakes at least this often (seconds) to look at its child itself."""
SUPERSEDED = "moved to version "
"""How the reason of a run cancelled by a version fork begins (`App.fork(version=...)`): the
new run waits for the same children, so that cancel does not reach them."""


def child_run_id(parent_id: str, seq: int) -> str:
    """The id of the child started at journal position `seq` of `parent_id`."""
    return f"{parent_id}.{seq}"


def parent_of(run: RunRecord) -> str | None:
    """The parent of a child run; ``None`` for other runs (a fork also has a ``parent_id``,
    but its id is not derived from it)."""
    parent = run.parent_id
    if parent is None or not run.id.startswith(parent + "."):
        return None
    return parent if run.id[len(parent) + 1:].isdigit() else None


def cancels_children(run: RunRecord) -> bool:
    """Whether `run` was cancelled (or asked to be) in a way that reaches its children: any
    cancel but a version fork's."""
    if run.status != "cancelled" and not run.cancel_requested:
        return False
    return not str((run.error or {}).get("message", "")).startswith(SUPERSEDED)


def cancel_reason(run: RunRecord) -> str:
    """Why a child of the cancelled `run` is cancelled."""
    return f"parent {run.id} cancelled: {(run.error or {}).get('message', 'cancelled')}"


def outcome_payload(
    status: str, output: Any, error: dict[str, Any] | None, usage: Usage | None
) -> dict[str, Any]:
    """What a parent is told about a child that ended."""
    return {
        "status": status,
        "output": output,
        "error": error,
        "usage": usage.to_dict() if usage is not None else {},
    }


def outcome_usage(rec: StepRecord) -> Usage:
    """What the child of a completed child wait spent (charged to the parent's ledger)."""
    if rec.kind != CHILD_WAIT_KIND or rec.status != "completed" or not isinstance(rec.output, dict):
        return Usage()
    output = cast(dict[str, Any], rec.output)  # pyright: ignore[reportUnknownMemberType]
    usage: Any = output.get("usage")
    return Usage.from_dict(cast(dict[str, Any], usage)) if isinstance(usage, dict) else Usage()


def outcome_result(child_id: str, outcome: dict[str, Any]) -> Any:
    """The child's output, or the error it ended with (`RunFailed`, `RunCancelled`…)."""
    status = str(outcome.get("status"))
    if status == "succeeded":
        return outcome.get("output")
    raise error_from_record(child_id, status, outcome.get("error"))


async def ended_child(store: Store, child_id: str) -> dict[str, Any] | None:
    """The outcome of `child_id` if it has ended (read from the store), else ``None``."""
    loaded = await store.load_run(child_id)
    if loaded is None:
        return None
    run, steps = loaded
    if run.status not in FINISHED_STATUSES:
        return None
    spent = Usage()
    for rec in steps:
        if rec.usage:
            spent = spent + Usage.from_dict(rec.usage)
        spent = spent + outcome_usage(rec)
    return outcome_payload(run.status, run.output, run.error, spent)


async def notify_parent(
    store: Store, parent_id: str, child_id: str, outcome: dict[str, Any]
) -> None:
    """Send a parent the outcome of its child (the signal its wait is for)."""
    await store.send_signal(parent_id, CHILD_SIGNAL + child_id, outcome)


def remaining_budget(budget: Budget | None, spent: Usage, created_at: float) -> Budget | None:
    """What is left of a parent's budget: the most a child may spend."""
    if budget is None:
        return None

    def left(limit: float | None, used: float) -> Any:
        return None if limit is None else max(0, limit - used)

    duration = budget.duration_seconds
    return Budget(
        max_llm_calls=left(budget.max_llm_calls, spent.llm_calls),
        max_tokens=left(budget.max_tokens, spent.tokens),
        max_cost_usd=left(budget.max_cost_usd, spent.cost_usd),
        max_tool_calls=left(budget.max_tool_calls, spent.tool_calls),
        max_duration=None if duration is None else max(0.0, created_at + duration - time.time()),
        on_exceed=budget.on_exceed,
    )


class _Parent(Protocol):
    """The parent run's context, as a handle to its child uses it."""

    def child_result(self, child_id: str) -> Coroutine[Any, Any, Any]: ...


class ChildRun:
    """A child run started with `Context.start_child`; await `result()` for its outcome."""

    def __init__(self, ctx: _Parent, run_id: str) -> None:
        self._ctx = ctx
        self.id = run_id
        """The child's run id (``<parent id>.<seq>``)."""

    def __repr__(self) -> str:
        return f"ChildRun({self.id!r})"

    def result(self) -> Coroutine[Any, Any, Any]:
        """Wait (durably: the parent holds no worker) for the child to end and return its
        output; raises `RunFailed`, `RunRefused` or `RunCancelled` as the child ended. A
        journaled operation: it takes its sequence number when called."""
        return self._ctx.child_result(self.id)
