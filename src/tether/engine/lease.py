"""The leases one holder (a worker, or `App.run`) keeps on the runs it executes.

A lease is only as good as the last renewal the store confirmed. For each run it executes the
holder keeps a *local deadline*: the monotonic time at which the confirming renewal (or the
claim) was **sent**, plus the lease. The store set the lease's end no earlier than that, so
until the local deadline no other worker can have taken the run over (clocks running at the
same rate; no clock offset matters). What the holder does with it:

1. **Renewal.** Every third of the lease one statement renews the leases of all runs it
   executes — only those: a run it stopped executing is not kept alive behind its back. A
   failed renewal is retried every `retry_seconds` (a quarter second), not after another
   whole interval, so a store that comes back finds its leases renewed at once. A renewal
   extends the local deadline only of the runs the store says it renewed
   (`Heartbeat.renewed_ids`): a run taken over meanwhile keeps its old, passing deadline.
2. **Fenced starts.** Before a step body starts, `ensure(run)`: while the local deadline has not
   passed, nothing to do; after it, one renewal of that run, and if the store does not renew it
   (taken over, or unreachable) the step does not start and the run is dropped. A paused
   process woken after its lease was taken over thus starts nothing; fencing already stops its
   writes.
3. **Handback.** Claims never take the claimer's own runs (it may still be executing one whose
   renewal was late), so a run the holder stops executing without finishing it — its store
   write failed for good — is released (`release_run`, fenced by its token) as soon as the
   store answers again. Otherwise a lone worker would never pick it up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Mapping
from typing import Any, Protocol

from tether.store.base import Heartbeat, Store

log = logging.getLogger("tether.worker")

RETRY_SECONDS = 0.25
"""How soon a failed renewal is tried again."""


class _Live(Protocol):
    def progress(self) -> dict[str, Any] | None: ...

    def request_cancel(self) -> None: ...


class Leases:
    """The leases `owner` holds on the runs it executes, renewed and checked as above."""

    def __init__(
        self,
        store: Store,
        owner: str,
        lease_seconds: float,
        *,
        live: Mapping[str, _Live] | None = None,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.store = store
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.retry_seconds = retry_seconds
        self._live: Mapping[str, _Live] = live if live is not None else dict[str, _Live]()
        self._deadlines: dict[str, float] = {}
        self._handback: dict[str, int] = {}

    def hold(self, run_id: str, sent_at: float) -> None:
        """Start tracking a run claimed by a request sent at `sent_at` (`time.monotonic()`)."""
        self._deadlines[run_id] = sent_at + self.lease_seconds

    def forget(self, run_id: str) -> None:
        """The run is no longer executed here (finished, suspended, released or dropped)."""
        self._deadlines.pop(run_id, None)

    def hand_back(self, run_id: str, token: int) -> None:
        """Release the run as soon as the store answers (see 3. above)."""
        self.forget(run_id)
        self._handback[run_id] = token

    def deadline(self, run_id: str) -> float | None:
        """Until when (`time.monotonic()`) the run's lease can be relied on."""
        return self._deadlines.get(run_id)

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._deadlines)

    async def renew(self, run_ids: Collection[str] | None = None) -> Heartbeat:
        """Renew the leases of `run_ids` (default: every run held) in one statement; raises
        what the store raises."""
        ids = [r for r in (self._deadlines if run_ids is None else run_ids) if r in self._deadlines]
        progress: dict[str, dict[str, Any] | None] = {}
        for run_id in ids:
            ctx = self._live.get(run_id)
            if ctx is not None:
                progress[run_id] = ctx.progress()
        sent = time.monotonic()
        beat = await self.store.heartbeat(self.owner, self.lease_seconds, progress, runs=ids)
        for run_id in beat.renewed_ids:
            if run_id in self._deadlines:
                self._deadlines[run_id] = max(self._deadlines[run_id], sent + self.lease_seconds)
        for run_id in beat.cancel_requested:
            ctx = self._live.get(run_id)
            if ctx is not None:
                ctx.request_cancel()
        return beat

    async def ensure(self, run_id: str) -> bool:
        """True when the run's lease can be relied on now, renewing it once if its local
        deadline passed; False when it cannot (do not start anything for the run)."""
        deadline = self._deadlines.get(run_id)
        if deadline is None or time.monotonic() < deadline:
            return deadline is not None
        try:
            beat = await self.renew([run_id])
        except Exception as exc:
            log.warning("%s: could not renew the lease of run %s (%s)", self.owner, run_id, exc)
            return False
        return run_id in beat.renewed_ids

    async def keep(self, *, first: float | None = None) -> None:
        """Renew and hand back until cancelled: first after `first` seconds (default: a third
        of the lease), then every third of the lease."""
        interval = self.lease_seconds / 3
        wait = interval if first is None else first
        while True:
            await asyncio.sleep(wait)
            wait = interval
            await self.release_handbacks()
            if not self._deadlines:
                continue
            try:
                await self.renew()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "%s: lease renewal failed (%s); retrying in %.2fs",
                    self.owner,
                    exc,
                    self.retry_seconds,
                )
                wait = self.retry_seconds

    async def release_handbacks(self) -> None:
        """Release the runs handed back; those the store cannot reach yet stay for next time."""
        for run_id, token in list(self._handback.items()):
            try:
                released = await self.store.release_run(run_id, token)
            except Exception:
                return
            self._handback.pop(run_id, None)
            if released:
                log.info("%s: handed run %s back after a store outage", self.owner, run_id)

    async def close(self) -> None:
        """Last attempt to hand runs back (shutdown)."""
        with contextlib.suppress(Exception):
            await self.release_handbacks()
