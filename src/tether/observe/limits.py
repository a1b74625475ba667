"""Spend limits per label and time window (e.g. tenant=acme at most $5 per day).

Checked before each model call, across all runs and workers. Implemented with the observe
layer; the agents layer calls `check_spend` before every model request.
"""

from __future__ import annotations

from typing import Any

from tether.engine.budget import Usage


async def check_spend(app: Any, ctx: Any, estimate: Usage) -> None:
    """Raise `BudgetExceeded` naming the label, window and spend when a limit would be passed.

    Placeholder until the observe layer lands: no limits are configured, so nothing to check.
    """
    return
