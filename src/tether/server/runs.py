"""The runs API: list, inspect, start, signal, cancel and fork runs (JSON under /api/runs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

import tether.server.runquery as runquery
from tether.engine.budget import Budget
from tether.errors import UnknownRun, UnknownWorkflow, UserError
from tether.server.auth import note, principal_of, role
from tether.server.errors import ApiError
from tether.server.rendering import tether_app_of
from tether.server.stats import verdicts
from tether.server.views import run_json, run_summary_json
from tether.store.base import FINISHED_STATUSES

router = APIRouter(prefix="/api/runs", tags=["runs"])


class StartRun(BaseModel):
    """Body of ``POST /api/runs``."""

    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(min_length=1, description="The workflow's registered name.")
    input: dict[str, Any] = Field(
        default_factory=dict[str, Any], description="The workflow's keyword arguments."
    )
    labels: dict[str, str] = Field(
        default_factory=dict[str, str], description="Cost attribution labels (team, tenant…)."
    )
    run_id: str | None = Field(
        default=None, min_length=1, description="Give one to make the start idempotent."
    )

    @field_validator("labels")
    @classmethod
    def _user_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        reserved = sorted(key for key in labels if key.startswith("tether."))
        if reserved:
            # tether.started_by is the authenticated principal, never what a client says.
            raise ValueError(f"labels starting with 'tether.' are tether's own: {', '.join(reserved)}")
        return labels


class SendSignal(BaseModel):
    """Body of ``POST /api/runs/{id}/signal``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="The signal name the run waits for.")
    data: Any = Field(default=None, description="Any JSON value, handed to the waiting run.")


class CancelRun(BaseModel):
    """Body of ``POST /api/runs/{id}/cancel``."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="cancelled from the dashboard", min_length=1)


class ForkRun(BaseModel):
    """Body of ``POST /api/runs/{id}/fork``."""

    model_config = ConfigDict(extra="forbid")

    from_step: int | None = Field(
        default=None,
        ge=1,
        le=10**9,
        description="Completed steps before this sequence number are reused, not executed "
        "again (default: just past the last journal entry — keep everything completed).",
    )
    version: str | None = Field(
        default=None,
        min_length=1,
        description="Pin the new run to this workflow version; it then replaces the source "
        "(unconsumed signals move over, an unfinished source is cancelled).",
    )


class RaiseBudget(BaseModel):
    """Body of ``POST /api/runs/{id}/budget``: the run's new budget (it replaces the old one;
    absent limits are unlimited)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_llm_calls: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_tool_calls: int | None = Field(default=None, ge=0)
    max_steps: int | None = Field(default=None, ge=0)
    max_duration: float | None = Field(default=None, ge=0, description="Seconds.")
    on_exceed: Literal["fail", "suspend"] = "fail"


@router.get("")
async def list_runs(
    request: Request,
    status: Annotated[str | None, Query(description="One run status.")] = None,
    workflow: Annotated[str | None, Query(description="A workflow name.")] = None,
    label: Annotated[
        list[str] | None, Query(description="key=value; repeat to require several labels.")
    ] = None,
    q: Annotated[
        str | None, Query(description="Search: runs whose id contains this, or key=value: "
                          "runs with that label.")
    ] = None,
    since: Annotated[str | None, Query(description="Created at or after (ISO 8601, UTC).")] = None,
    until: Annotated[str | None, Query(description="Created before (ISO 8601, UTC).")] = None,
    within: Annotated[
        str | None, Query(alias="range", description="Created within: 15m, 1h, 24h, 7d, 30d.")
    ] = None,
    cursor: Annotated[
        str | None, Query(description="next_cursor of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    """Runs, newest first, without their journals; ``health`` is the observe layer's ok /
    slow / stuck verdict with its reason (``null`` without that layer). ``next_cursor`` pages
    on (``null`` on the last page)."""
    query = runquery.build(
        status=status, workflow=workflow, label=label, q=q, since=since, until=until,
        within=within, cursor=cursor, limit=limit,
    )
    runs, next_cursor = await runquery.find(request, query)
    health = await verdicts(request, runs)
    return {
        "runs": [run_summary_json(run) | {"health": h} for run, h in zip(runs, health, strict=True)],
        "next_cursor": next_cursor,
    }


@router.get("/{run_id}")
async def get_run(request: Request, run_id: str) -> dict[str, Any]:
    """One run with its input, output, whole journal and health verdict."""
    run = await tether_app_of(request).get_run_async(run_id)
    (health,) = await verdicts(request, [run])
    return run_json(run) | {"health": health}


@router.post("", status_code=201, **role("operator", "run.start"))
async def start_run(request: Request, body: StartRun) -> JSONResponse:
    """Queue a run (a worker with the workflow executes it). With `run_id`, starting twice
    returns the same run (200 instead of 201)."""
    app = tether_app_of(request)
    existed = False
    if body.run_id is not None:
        try:
            await app.get_run_async(body.run_id)
            existed = True
        except UnknownRun:
            pass
    try:
        handle = await app.start_async(
            body.workflow, body.input, run_id=body.run_id, labels=body.labels,
            started_by=principal_of(request).name,
        )
    except UnknownWorkflow:
        raise
    except UserError as exc:
        # Everything start refuses is about what was sent: the input, the labels, the run id.
        raise ApiError(422, str(exc), type="ValidationError", field=_field_of(str(exc))) from exc
    note(request, target=handle.id, workflow=body.workflow)
    run = await app.get_run_async(handle.id)
    return JSONResponse(run_json(run), status_code=200 if existed else 201)


@router.post("/{run_id}/signal", status_code=202, **role("operator", "run.signal"))
async def signal_run(request: Request, run_id: str, body: SendSignal) -> dict[str, Any]:
    """Deliver a signal to the run's durable mailbox; a run waiting for it becomes runnable."""
    note(request, name=body.name)
    app = tether_app_of(request)
    run = await app.get_run_async(run_id)
    if run.status in FINISHED_STATUSES:
        raise ApiError(
            409,
            f"run {run_id} already ended ({run.status}); signal {body.name!r} was not delivered",
            type="RunEnded",
        )
    await app.signal_async(run_id, body.name, body.data)
    return run_json(await app.get_run_async(run_id))


@router.post("/{run_id}/cancel", **role("operator", "run.cancel"))
async def cancel_run(request: Request, run_id: str, body: CancelRun | None = None) -> dict[str, Any]:
    """Cancel a queued or waiting run now; a running one is interrupted by the worker holding it
    (within about half a second). Cancelling an ended run changes nothing and returns it as it is."""
    reason = body.reason if body is not None else CancelRun().reason
    note(request, reason=reason)
    return run_json(await tether_app_of(request).cancel_async(run_id, reason))


@router.post("/{run_id}/budget", **role("operator", "run.budget"))
async def raise_budget(request: Request, run_id: str, body: RaiseBudget) -> dict[str, Any]:
    """Replace the run's budget; a run paused on its budget (waiting for ``tether.budget``)
    becomes runnable and continues under the new limits."""
    app = tether_app_of(request)
    run = await app.get_run_async(run_id)
    if run.status in FINISHED_STATUSES:
        raise ApiError(
            409, f"run {run_id} already ended ({run.status}); its budget no longer applies",
            type="RunEnded",
        )
    return run_json(await app.raise_budget_async(run_id, Budget(**body.model_dump())))


@router.post("/{run_id}/fork", status_code=201, **role("operator", "run.fork"))
async def fork_run(request: Request, run_id: str, body: ForkRun) -> dict[str, Any]:
    """A new run of the same workflow and input reusing the journal before `from_step`,
    optionally moved onto another workflow `version` (see `App.fork`)."""
    app = tether_app_of(request)
    source = await app.get_run_async(run_id)
    end = max((step.seq for step in source.steps), default=0) + 1
    if body.from_step is not None and body.from_step > end:
        raise ApiError(
            422,
            f"run {run_id} has {end - 1} journal entries; from_step must be between 1 and "
            f"{end}",
            type="ValidationError",
            field="from_step",
        )
    handle = await app.fork_async(
        run_id, body.from_step, version=body.version, started_by=principal_of(request).name
    )
    note(request, from_step=body.from_step, version=body.version, run=handle.id)
    return run_json(await app.get_run_async(handle.id))


def _field_of(message: str) -> str:
    """Which request field an App error is about, from its wording (best effort)."""
    lowered = message.lower()
    if "label" in lowered:
        return "labels"
    if "run id" in lowered:
        return "run_id"
    return "input"
