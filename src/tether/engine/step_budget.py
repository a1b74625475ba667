"""A step's budgets before it starts: checked against what the run and its scopes spent plus
what the steps in flight reserved (`check_budget`), then the step's worst case held until it
settles (`reserve`; label spend windows in the store). See `tether.engine.ledger`.

`Context` inherits these from `StepBudgets`; `_Budgeted` names what they use of it.
"""

from __future__ import annotations

import time
from typing import Protocol

from tether.engine.budget import ZERO, Budget, Usage
from tether.engine.control import DropRun, Suspend
from tether.engine.ledger import Ledger, Reservation, hold_in_store, window_exceeded
from tether.errors import BudgetExceeded, StoreUnavailable
from tether.store.base import RunRecord, SpendWindow, StepRecord

BUDGET_SIGNAL = "tether.budget"
"""What a run parked on its budget (``on_exceed="suspend"``) waits for."""


class _Budgeted(Protocol):
    """What the budget checks use of the `Context`."""

    fatal: BaseException | None
    _run: RunRecord
    _journal: dict[int, StepRecord]
    _budget: Budget | None
    _usage: Usage
    _ledger: Ledger

    @property
    def run_id(self) -> str: ...

    def _stop(self, signal: BaseException) -> BaseException: ...


class StepBudgets(_Budgeted):
    """The budget checks of a step about to start."""

    def _check_budget(
        self, estimate: Usage, budgets: tuple[tuple[Budget, Usage, str], ...]
    ) -> None:
        # Spent = journaled + reserved by the steps in flight (see tether.engine.ledger).
        steps = len(self._journal) + 1
        elapsed = time.time() - self._run.created_at
        ledger = self._ledger
        if self._budget is not None:
            spent = self._usage + ledger.reserved("run")
            self._check_one(self._budget, spent, steps, elapsed, estimate, "run")
        for budget, spent, scope in budgets:
            self._check_one(budget, spent + ledger.reserved(scope), 0, 0.0, estimate, scope)

    async def _reserve(
        self,
        seq: int,
        estimate: Usage,
        budgets: tuple[tuple[Budget, Usage, str], ...],
        windows: tuple[SpendWindow, ...],
    ) -> Reservation | None:
        """Hold `estimate` (already checked against the budgets) until the step settles."""
        if not windows and (estimate is ZERO or (self._budget is None and not budgets)):
            return None  # the hot path of plain steps and of runs without limits: no work
        scopes = (["run"] if self._budget is not None else []) + [scope for _, _, scope in budgets]
        reservation = self._ledger.hold(scopes, estimate)
        try:
            if windows:
                verdict = await self._ledger.reserve_windows(reservation, seq, windows)
                if verdict is not None:  # refused: reserve_windows released it
                    error = window_exceeded(self.run_id, verdict, estimate)
                    self.fatal = error
                    raise error
            if self._budget is not None:
                await hold_in_store(self._ledger, reservation, seq)
        except StoreUnavailable:
            await reservation.release()
            raise self._stop(DropRun()) from None
        except BaseException:
            await reservation.release()  # idempotent
            raise
        return reservation

    def _check_one(
        self, budget: Budget, spent: Usage, steps: int, elapsed: float, estimate: Usage, scope: str
    ) -> None:
        try:
            budget.check(
                spent=spent,
                steps=steps,
                elapsed=elapsed,
                estimate=estimate,
                scope=scope,
                run_id=self.run_id,
            )
        except BudgetExceeded as exc:
            if budget.on_exceed == "suspend":
                raise self._stop(Suspend(wake_at=None, waiting_for=BUDGET_SIGNAL)) from exc
            self.fatal = exc
            raise
