"""Finding runs: search by id or label, filters by status, workflow and time range, and the
cursor that pages through them (shared by ``GET /api/runs`` and the runs page).

The cursor is opaque to clients: the ``(created_at, id)`` of a page's last run, so the next
page starts right after it however many runs were created meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Request

from tether.engine.records import RunInfo
from tether.server.errors import ApiError
from tether.server.rendering import tether_app_of
from tether.store.base import RUN_STATUSES

RANGES = {"15m": 15 * 60, "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
"""The page's "created within" choices, in seconds."""


@dataclass(frozen=True)
class RunQuery:
    """What the runs list was asked for (already validated)."""

    status: str | None = None
    workflow: str | None = None
    labels: dict[str, str] | None = None
    id_contains: str | None = None
    since: float | None = None
    until: float | None = None
    before: tuple[float, str] | None = None
    limit: int = 50


def parse_labels(pairs: list[str] | None) -> dict[str, str] | None:
    """``["team=sales", "tenant=acme"]`` → ``{"team": "sales", "tenant": "acme"}``."""
    if not pairs:
        return None
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ApiError(
                422,
                f"label filter {pair!r} must look like key=value, e.g. team=sales",
                type="ValidationError",
                field="label",
            )
        labels[key] = value
    return labels


def encode_cursor(run: RunInfo) -> str:
    """The cursor of the page that follows `run`."""
    raw = json.dumps([run.created_at.timestamp(), run.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """``(created_at, id)`` from a cursor; a 422 naming the field when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, run_id = json.loads(raw)
        if isinstance(created, int | float) and isinstance(run_id, str):
            return float(created), run_id
    except (binascii.Error, ValueError, TypeError):
        pass
    raise ApiError(
        422, "cursor is not one this server gave out; use the next_cursor of a previous page",
        type="ValidationError", field="cursor",
    )


def parse_time(value: str | None, field: str) -> float | None:
    """An ISO 8601 date or datetime (no zone: UTC) as a timestamp."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(
            422, f"{field} {value!r} is not a date or time; use ISO 8601, e.g. 2026-12-01T09:30",
            type="ValidationError", field=field,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def build(
    *,
    status: str | None,
    workflow: str | None,
    label: list[str] | None,
    q: str | None,
    since: str | None,
    until: str | None,
    within: str | None,
    cursor: str | None,
    limit: int,
) -> RunQuery:
    """Validate the list's query parameters. `q` finds runs whose id contains it, or, written
    ``key=value``, runs with that label; `within` is one of `RANGES` (overrides `since`)."""
    status = status or None
    if status is not None and status not in RUN_STATUSES:
        raise ApiError(
            422, f"unknown status {status!r}; use one of {', '.join(RUN_STATUSES)}",
            type="ValidationError", field="status",
        )
    pairs = [pair for pair in label or [] if pair]
    q = (q or "").strip() or None
    id_contains = None
    if q is not None and "=" in q:
        pairs.append(q)
    elif q is not None:
        id_contains = q
    start = parse_time(since, "since")
    if within:
        if within not in RANGES:
            raise ApiError(
                422, f"unknown range {within!r}; use one of {', '.join(RANGES)}",
                type="ValidationError", field="range",
            )
        start = time.time() - RANGES[within]
    end = parse_time(until, "until")
    return RunQuery(
        status=status,
        workflow=workflow or None,
        labels=parse_labels(pairs),
        id_contains=id_contains,
        since=start,
        until=end,
        before=decode_cursor(cursor) if cursor else None,
        limit=limit,
    )


async def find(request: Request, query: RunQuery) -> tuple[list[RunInfo], str | None]:
    """One page of runs and the cursor of the next page (``None``: this is the last)."""
    runs = await tether_app_of(request).list_runs_async(
        status=query.status, workflow=query.workflow, labels=query.labels,
        limit=query.limit + 1, id_contains=query.id_contains, since=query.since,
        until=query.until, before=query.before,
    )
    more = len(runs) > query.limit
    runs = runs[: query.limit]
    return runs, encode_cursor(runs[-1]) if more and runs else None
