"""Named queues: `App.queue` declares one, `App.start(..., queue=, key=, priority=)` puts a run
in it, and every worker's claim keeps the queue within its limits (store/queues_sql.py).

A queue's limits live in the store, saved by every App that declares the queue before it starts
a run or a worker, so workers and clients agree whichever process declared it last. A run
waiting for capacity is ``queued`` and its ``waiting_for`` says which queue and key it waits for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from tether.errors import UserError
from tether.store.base import QueueRecord

Rate = float | tuple[int, timedelta | float]
"""Starts per second, or ``(count, per)``: at most `count` starts in any `per` window."""


@dataclass(frozen=True, slots=True)
class Queue:
    """A named queue's limits (``None``: no limit)."""

    name: str
    concurrency: int | None = None
    """Running runs of the queue at most, across all workers."""
    per_key: int | None = None
    """Running runs with one key (one tenant) at most."""
    rate: Rate | None = None
    """How fast the queue's runs may start."""
    key_label: str | None = "tenant"
    """The label a run's key defaults to when `App.start` gives none."""

    def __post_init__(self) -> None:
        name = cast(object, self.name)
        if not isinstance(name, str) or not name:
            raise UserError(f"app.queue(): the name must be a non-empty string, got {self.name!r}")
        limits = (("concurrency", cast(object, self.concurrency)),
                  ("per_key", cast(object, self.per_key)))
        for what, value in limits:
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise UserError(f"app.queue({self.name!r}): {what} must be a positive integer, "
                                f"got {value!r}")
        self.record()  # validates the rate

    def record(self) -> QueueRecord:
        """The queue as the store keeps it."""
        count, seconds = _rate(self.name, self.rate)
        return QueueRecord(self.name, self.concurrency, self.per_key, count, seconds)


def _rate(name: str, rate: Rate | None) -> tuple[int | None, float | None]:
    if rate is None:
        return None, None
    if isinstance(rate, tuple) and len(cast(tuple[object, ...], rate)) == 2:
        count, per = rate
        seconds = per.total_seconds() if isinstance(per, timedelta) else (
            float(per) if _number(per) else -1.0)
    else:
        # n per second: n starts per second, or one start per 1/n seconds when n < 1.
        per_second = float(cast(float, rate)) if _number(rate) else -1.0
        count, seconds = (math.floor(per_second), 1.0) if per_second >= 1 else (1, 1 / per_second if per_second > 0 else -1.0)
    if (isinstance(count, bool) or not isinstance(cast(object, count), int) or count < 1
            or not 0 < seconds < math.inf):
        raise UserError(
            f"app.queue({name!r}): rate must be starts per second (> 0) or (count, per) with a "
            f"positive count and period, got {rate!r}"
        )
    return count, seconds


def _number(value: object) -> bool:
    """A finite int or float (callers pass untyped values; True is not a number here)."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))
