"""Reservations: what the steps in flight may still spend, held against every limit over them.

Budgets are a ledger over journaled usage, but a step's usage is journaled only when it ends;
concurrent steps (a `Parallel` of agents, runs on many workers under one spend limit) checked
against the journal alone would each see room that the others are about to use. So a step that
declares an estimate of its worst case (the agents layer: one call, the prompt's tokens, the
completion bounded by ``max_tokens``, priced) *reserves* it before it runs:

1. Against the run's budget and the extra budgets given with the step (an agent node's), in
   memory: a run has one holder at a time (fencing), so every step in flight of a run lives in
   its holder's `Context`. The check and the reservation happen with no ``await`` in between,
   so concurrent branches see each other's reservations. Spent = journaled + reserved.
2. Against the label spend windows, in the store (`Store.reserve_spend`): one atomic decision
   across every worker, counting the open reservations of live holders.

After the step's outcome is journaled the reservation is released (settled to the real usage,
which the journal now holds); a failed or interrupted step releases it too — except a call
cancelled in flight (its worker stopping, or workflow code cancelling the step), whose store
rows stay, counted once the run changes hands as a dead worker's are. A dead worker's
store reservations stay counted as spent in their windows (its calls may have been billed, and
the runs taken over send them again); only the run's holder releases one. For the run's own
budget the same holds through `hold_in_store`: a run with a budget records each reservation in
the store before the call, and the next holder counts what a dead one left (`lost_holds`).

The one overshoot left is a step that spent more than it reserved (a response longer than its
bound); it is recorded on the step's meta under `OVERSHOOT` so runs and cost reports can show
it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tether.engine.budget import ZERO, Usage
from tether.errors import BudgetExceeded
from tether.store.base import SpendVerdict, SpendWindow, Store

OVERSHOOT = "tether.overshoot"
"""Step meta key: ``{"cost_usd": …, "tokens": …}`` a step spent beyond its reservation."""

LOST_SEND = "tether.lost_send"
"""Step meta key (value ``1``): the step was in flight on an earlier holder of the run when
that holder was lost (its last heartbeat said so) and that holder never journaled it; it was
started again here, so its call may have been sent, and billed, once more than `attempts`
says. What a run without a budget knows of a call cut by a crash: it holds nothing in the store
before a call (`Store.cut_calls` has the calls of runs with a budget or a spend limit, with
their worst case). One at most per takeover, and only for a step that spanned a heartbeat."""


@dataclass(slots=True)
class Reservation:
    """One step's hold on the ledger: in memory per budget scope, and in the store for its
    spend windows."""

    ledger: Ledger
    scopes: tuple[str, ...]
    estimate: Usage
    store_id: str | None = None
    hold_id: str | None = None
    """The run budget's hold in the store (`Store.hold_usage`), when the run has a budget."""
    released: bool = False

    def overshoot(self, actual: Usage) -> dict[str, Any] | None:
        """What `actual` spent beyond this reservation (cost and tokens), or ``None``."""
        over: dict[str, Any] = {}
        if self.estimate.cost_usd > 0 and actual.cost_usd > self.estimate.cost_usd:
            over["cost_usd"] = actual.cost_usd - self.estimate.cost_usd
        if self.estimate.tokens > 0 and actual.tokens > self.estimate.tokens:
            over["tokens"] = actual.tokens - self.estimate.tokens
        return over or None

    def abandon(self) -> None:
        """Give the room back in memory only: the call was cut short in flight (its worker is
        stopping) and may have been billed. Its store rows stay, a lost holder's once the run
        changes hands: counted as spent, and shown as cut (`Store.cut_calls`)."""
        if not self.released:
            self.released = True
            self.ledger.drop(self.scopes, self.estimate)

    async def release(self) -> None:
        """Give the room back (idempotent): the step's usage is journaled, or it never came."""
        if self.released:
            return
        self.released = True
        self.ledger.drop(self.scopes, self.estimate)
        if self.store_id is not None:
            # A store that cannot be reached now: the row stays counted, as a dead holder's.
            with contextlib.suppress(Exception):
                await self.ledger.store.release_spend(self.store_id)
        if self.hold_id is not None:
            with contextlib.suppress(Exception):
                await self.ledger.store.release_hold(self.hold_id)


@dataclass(slots=True)
class Ledger:
    """The reservations of one run's steps in flight (one per `Context`)."""

    store: Store
    run_id: str
    token: int
    held: dict[str, Usage] = field(default_factory=dict[str, Usage])
    """Reserved usage by scope (``run``, ``agent <name>``…)."""
    holders: dict[str, int] = field(default_factory=dict[str, int])
    """Reservations open per scope: the last one out clears the scope exactly (no float
    residue left to refuse a tight fit)."""

    def reserved(self, scope: str) -> Usage:
        return self.held.get(scope, ZERO)

    def hold(self, scopes: Sequence[str], estimate: Usage) -> Reservation:
        """Reserve `estimate` in memory under every scope (call right after the check, with no
        ``await`` in between)."""
        for scope in scopes:
            self.held[scope] = self.reserved(scope) + estimate
            self.holders[scope] = self.holders.get(scope, 0) + 1
        return Reservation(self, tuple(scopes), estimate)

    def drop(self, scopes: Sequence[str], estimate: Usage) -> None:
        for scope in scopes:
            count = self.holders.get(scope, 0) - 1
            if count <= 0:
                self.holders.pop(scope, None)
                self.held.pop(scope, None)
            else:
                self.holders[scope] = count
                self.held[scope] = _minus(self.reserved(scope), estimate)

    async def reserve_windows(
        self, reservation: Reservation, seq: int, windows: Sequence[SpendWindow]
    ) -> SpendVerdict | None:
        """Reserve the estimate's cost against the spend windows in the store; on refusal the
        in-memory part is released too."""
        store_id = f"{self.run_id}:{seq}:{self.token}"
        verdict = await self.store.reserve_spend(
            self.run_id, self.token, store_id, reservation.estimate.cost_usd, windows
        )
        if verdict is not None:
            await reservation.release()
            return verdict
        reservation.store_id = store_id
        return None


async def hold_in_store(ledger: Ledger, reservation: Reservation, seq: int) -> None:
    """Record the run budget's share of `reservation` in the store before the call is sent: if
    this worker dies mid-call, the worker that takes the run over counts it (`lost_holds`)."""
    hold_id = f"{ledger.run_id}:{seq}:{ledger.token}"
    await ledger.store.hold_usage(ledger.run_id, ledger.token, hold_id,
                                  reservation.estimate.to_dict())
    reservation.hold_id = hold_id


def window_exceeded(run_id: str, verdict: SpendVerdict, estimate: Usage) -> BudgetExceeded:
    """The error for a call whose worst case does not fit a spend window."""
    w = verdict.window
    note = f" (plus {verdict.unpriced_calls} unpriced call(s) not counted)" if verdict.unpriced_calls else ""
    held = f" and ${verdict.reserved:.6f} held by calls in flight" if verdict.reserved else ""
    would_be = verdict.spent + verdict.reserved + estimate.cost_usd
    return BudgetExceeded(
        f"run {run_id}: spend limit {w.description or w.key} reached: ${verdict.spent:.6f} spent "
        f"in the window{held}{note}, and the next model call may cost up to "
        f"${estimate.cost_usd:.6f}; raise the limit or wait for the window to move on",
        run_id=run_id,
        limit="spend_limit",
        details={
            "limit": "spend_limit",
            "label": w.label,
            "value": w.value,
            "max_usd": w.max_usd,
            "since": w.since,
            "spent": verdict.spent,
            "reserved": verdict.reserved,
            "unpriced_calls": verdict.unpriced_calls,
            "would_be": would_be,
        },
    )


def _minus(a: Usage, b: Usage) -> Usage:
    return Usage(**{k: getattr(a, k) - getattr(b, k) for k in Usage.__dataclass_fields__})
