"""Retention: finished runs are deleted by the workers themselves, by status and workflow.

``tether.App(retention=tether.Retention(default=timedelta(days=30),
statuses={"succeeded": timedelta(days=7)}, workflows={"audit_report": timedelta(days=365)}))``.
A finished run is kept for the most specific period that applies — its workflow's, else its
status's, else `default` — and deleted (journal, mailbox, events with it) once it is older.
Every worker of the App applies the policy every `every` (jittered, so a fleet does not prune
in step); concurrent prunes are safe (a row another session holds is skipped until the next
pass). `tether prune --older-than` still deletes by hand, whatever the policy.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from tether.errors import UserError
from tether.store.base import FINISHED_STATUSES, Store

log = logging.getLogger("tether.retention")


@dataclass(frozen=True, slots=True)
class Retention:
    """How long finished runs are kept (see the module docstring)."""

    default: timedelta | None = None
    """Every finished run not covered below; ``None``: kept."""
    statuses: Mapping[str, timedelta] = field(default_factory=dict[str, timedelta])
    """By final status (``succeeded``, ``failed``, ``refused``, ``cancelled``)."""
    workflows: Mapping[str, timedelta] = field(default_factory=dict[str, timedelta])
    """By workflow name; wins over the status rules."""
    every: timedelta = timedelta(minutes=10)
    """How often each worker applies the policy."""

    def __post_init__(self) -> None:
        for status in self.statuses:
            if status not in FINISHED_STATUSES:
                raise UserError(
                    f"Retention: {status!r} is not a final status; use one of "
                    f"{', '.join(sorted(FINISHED_STATUSES))}"
                )
        periods = [self.default, *self.statuses.values(), *self.workflows.values(), self.every]
        for period in periods:
            if period is not None and period.total_seconds() <= 0:
                raise UserError(f"Retention: periods must be positive, got {period}")

    async def apply(self, store: Store, now: float | None = None) -> int:
        """One pass: delete what the policy no longer keeps; returns how many runs."""
        now = time.time() if now is None else now
        deleted = 0
        for workflow, keep in self.workflows.items():
            deleted += await store.prune(now - keep.total_seconds(), workflow=workflow)
        others = tuple(self.workflows)
        for status, keep in self.statuses.items():
            deleted += await store.prune(
                now - keep.total_seconds(), status=status, exclude_workflows=others
            )
        if self.default is not None:
            deleted += await store.prune(
                now - self.default.total_seconds(),
                exclude_statuses=tuple(self.statuses),
                exclude_workflows=others,
            )
        return deleted

    async def keep_applying(self, store: Store, stop: asyncio.Event) -> None:
        """Apply the policy every `every` (jittered) until `stop` is set."""
        period = self.every.total_seconds()
        wait = random.uniform(0, min(period, 5.0))  # soon after start, not all at once
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), wait)
                return
            except TimeoutError:
                pass
            try:
                deleted = await self.apply(store)
                if deleted:
                    log.info("retention: deleted %d finished run(s)", deleted)
            except Exception as exc:  # a store blip: the next pass tries again
                log.warning("retention: could not prune (%s); will try again", exc)
            wait = period * random.uniform(0.9, 1.1)
