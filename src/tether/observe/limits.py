"""Spend limits per label and time window (e.g. tenant=acme at most $5 per day).

Enforced before each model call, across all runs and workers: the agents layer turns the limits
covering a run (`spend_windows`) into store windows and reserves the call's worst-case cost
against them with the model step (`Store.reserve_spend`, see `tether.engine.ledger`). The store
counts the journaled cost of every run carrying the label, whichever worker ran it, plus the
reservations of calls in flight on live workers, in one atomic decision; so twenty runs started
at once on several workers cannot together pass the limit. An App with no limits pays nothing:
no query at all. `check_spend` is the read-only check (no reservation) for code of your own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tether.engine.budget import Usage
from tether.errors import BudgetExceeded, UserError
from tether.store.base import SpendWindow

_LIMITS_KEY = "tether.observe.spend_limits"


@dataclass(frozen=True, slots=True)
class SpendLimit:
    """At most `max_usd` of model spend per `window` for runs labelled ``label=value``."""

    label: str
    """The label key, e.g. ``tenant``, ``team``, ``feature``."""
    value: str
    """The label value the limit applies to, e.g. ``acme``."""
    max_usd: float
    window: timedelta = timedelta(days=1)
    """A sliding window ending now."""

    def __post_init__(self) -> None:
        if self.max_usd < 0:
            raise UserError(f"SpendLimit({self.label}={self.value}): max_usd must not be negative")
        if self.window.total_seconds() <= 0:
            raise UserError(f"SpendLimit({self.label}={self.value}): window must be positive")

    def describe(self) -> str:
        return f"{self.label}={self.value} at most ${self.max_usd:g} per {_human(self.window)}"


def set_spend_limits(app: Any, limits: Iterable[SpendLimit]) -> None:
    """Configure the App's spend limits (replacing earlier ones)."""
    app.extensions[_LIMITS_KEY] = tuple(limits)


def spend_limits(app: Any) -> tuple[SpendLimit, ...]:
    """The App's configured spend limits."""
    if app is None:
        return ()
    return tuple(app.extensions.get(_LIMITS_KEY) or ())


def spend_windows(app: Any, labels: dict[str, str] | None) -> tuple[SpendWindow, ...]:
    """The App's limits that cover a run with these labels, as store windows ending now."""
    limits = spend_limits(app)
    if not limits or not labels:
        return ()
    now = time.time()
    return tuple(
        SpendWindow(
            label=limit.label,
            value=limit.value,
            max_usd=limit.max_usd,
            since=now - limit.window.total_seconds(),
            description=limit.describe(),
        )
        for limit in limits
        if labels.get(limit.label) == limit.value
    )


async def check_spend(app: Any, ctx: Any, estimate: Usage) -> None:
    """Raise `BudgetExceeded` naming the label, window and spend when a limit would be passed.

    A limit is reached when the window's spend is already at the maximum, or the estimated
    cost of the next call would take it past. The run ends with the error even if workflow
    code catches it (like a run budget).
    """
    limits = spend_limits(app)
    if not limits:
        return
    labels: dict[str, str] = dict(getattr(ctx, "labels", None) or {})
    now = time.time()
    for limit in limits:
        if labels.get(limit.label) != limit.value:
            continue
        since = now - limit.window.total_seconds()
        spent, unpriced = await app.store.label_spend(limit.label, limit.value, since)
        if spent < limit.max_usd and spent + estimate.cost_usd <= limit.max_usd:
            continue
        run_id = getattr(ctx, "run_id", None)
        note = f" (plus {unpriced} unpriced call(s) not counted)" if unpriced else ""
        error = BudgetExceeded(
            f"run {run_id}: spend limit {limit.describe()} reached: ${spent:.6f} spent in the "
            f"last {_human(limit.window)}{note}, the next model call is estimated at "
            f"${estimate.cost_usd:.6f}; raise the limit or wait for the window to move on",
            run_id=run_id,
            limit="spend_limit",
            details={
                "limit": "spend_limit",
                "label": limit.label,
                "value": limit.value,
                "window_seconds": limit.window.total_seconds(),
                "max_usd": limit.max_usd,
                "spent": spent,
                "unpriced_calls": unpriced,
                "would_be": spent + estimate.cost_usd,
            },
        )
        if hasattr(ctx, "fatal"):
            ctx.fatal = error
        raise error


def _human(window: timedelta) -> str:
    seconds = window.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds:g} seconds"
