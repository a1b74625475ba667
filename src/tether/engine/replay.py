"""Replay a recorded journal against the current workflow code, executing nothing.

Use it before deploying a change to a workflow: export runs that are in flight (``tether show
RUN --json``), replay them against the new code, and learn whether they would resume cleanly
or fail with `NonDeterminismError`. Tests use it with recorded journals stored as JSON.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether.engine.context import Context, ReplayEnd, bound
from tether.engine.control import CancelRun, DropRun, RefuseRun, Suspend
from tether.errors import NonDeterminismError, UserError
from tether.store.base import RunRecord, StepRecord

if TYPE_CHECKING:
    from tether.engine.runtime import Runtime


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """How far the code got against the recorded journal."""

    completed: bool
    """The workflow returned using recorded outcomes only."""
    output: Any
    reached: int
    """The last sequence number the code asked for."""
    stopped_at: str | None
    """Why replay stopped early: past the journal's end, a suspension, or the workflow's own
    error (as ``Type: message``)."""


def _steps_from_export(run_id: str, steps: list[dict[str, Any]]) -> list[StepRecord]:
    records: list[StepRecord] = []
    for raw in steps:
        try:
            records.append(
                StepRecord(
                    run_id=run_id,
                    seq=int(raw["seq"]),
                    name=str(raw["name"]),
                    kind=str(raw.get("kind", "step")),
                    status=str(raw["status"]),
                    input=raw.get("input"),
                    output=raw.get("output"),
                    error=raw.get("error"),
                    attempts=int(raw.get("attempts", 1)),
                    wake_at=None,
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"journal entry {raw!r} lacks seq/name/status: {exc}") from None
    return records


async def replay_async(app: Runtime, export: dict[str, Any]) -> ReplayResult:
    """Replay an exported run (the JSON of ``tether show RUN --json`` / `RunInfo`) against
    the workflow registered on `app`. Raises `NonDeterminismError` if the code diverges."""
    name = export.get("workflow")
    definition = app.get_workflow(str(name), export.get("version")) or app.get_workflow(str(name))
    if definition is None:
        raise UserError(f"the app has no workflow {name!r} to replay against")
    run_id = str(export.get("id", "replay"))
    now = time.time()
    run = RunRecord(
        id=run_id, workflow=definition.name, version=definition.version, status="running",
        input=export.get("input") or {}, output=None, error=None,
        labels=dict(export.get("labels") or {}), budget=None, parent_id=None,
        created_at=now, updated_at=now, started_at=now, finished_at=None, wake_at=None,
        waiting_for=None, lease_owner=None, lease_expires=None, fencing=0, recoveries=0,
        cancel_requested=False,
    )
    journal = _steps_from_export(run_id, list(export.get("steps") or []))
    ctx = Context(
        run=run, token=0, store=app.store, journal=journal, budget=None, app=app,
        replay_only=True,
    )
    try:
        with bound(ctx):
            output = await definition.fn(ctx, **definition.validate_input(run.input))
            if ctx.fatal is not None:
                raise ctx.fatal
        return ReplayResult(True, output, ctx.sequence, None)
    except NonDeterminismError:
        raise
    except ReplayEnd as end:
        return ReplayResult(False, None, end.seq, f"past the journal's end at #{end.seq} {end.name!r}")
    except (Suspend, CancelRun, DropRun, RefuseRun) as signal:
        return ReplayResult(False, None, ctx.sequence, type(signal).__name__)
    except Exception as exc:
        if isinstance(ctx.fatal, NonDeterminismError):
            raise ctx.fatal from None
        return ReplayResult(False, None, ctx.sequence, f"{type(exc).__name__}: {exc}")


def replay(app: Runtime, export: dict[str, Any]) -> ReplayResult:
    """Synchronous twin of `replay_async`."""
    return app.portal.run(replay_async(app, export))
