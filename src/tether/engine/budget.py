"""Budgets and the usage ledger.

A run's spend is the sum of the usage journaled with its steps, so the ledger survives crashes
and resumes. Before each step its worst case (the estimate an upper layer gives) is checked
against journaled plus reserved usage and reserved until the step's outcome — with the real
usage — is journaled (`tether.engine.ledger`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any, Literal

from tether.errors import BudgetExceeded, UserError


@dataclass(frozen=True, slots=True)
class Usage:
    """What steps spent."""

    llm_calls: int = 0
    """Model requests sent."""
    tool_calls: int = 0
    """Tool executions."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    """Priced spend; unpriced calls add nothing here and count in `unpriced_calls`."""
    unpriced_calls: int = 0
    """Model calls whose price is unknown (never silently counted as zero cost)."""

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        if other is ZERO:  # most steps spend nothing: no new object
            return self
        if self is ZERO:
            return other
        return Usage(
            llm_calls=self.llm_calls + other.llm_calls,
            tool_calls=self.tool_calls + other.tool_calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
            unpriced_calls=self.unpriced_calls + other.unpriced_calls,
        )

    def to_dict(self) -> dict[str, Any]:
        # Field by field rather than dataclasses.asdict: this runs for every journaled step,
        # and asdict's recursive deep copy was a tenth of a step's engine time.
        if self is ZERO:
            return {}
        return {k: v for k in _USAGE_FIELDS if (v := getattr(self, k))}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Usage:
        if not data:
            return ZERO
        return cls(**{k: v for k, v in data.items() if k in _USAGE_FIELD_SET})


_USAGE_FIELDS = tuple(f.name for f in fields(Usage))
_USAGE_FIELD_SET = frozenset(_USAGE_FIELDS)
ZERO = Usage()


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits on what one run (or one agent node) may spend. ``None`` means unlimited."""

    max_llm_calls: int | None = None
    max_tokens: int | None = None
    """Input plus output tokens."""
    max_cost_usd: float | None = None
    max_tool_calls: int | None = None
    max_steps: int | None = None
    """Journaled operations of any kind (steps, waits, model and tool calls)."""
    max_duration: float | timedelta | None = None
    """Wall time since the run was created, in seconds or as a timedelta (waits count)."""
    on_exceed: Literal["fail", "suspend"] = "fail"
    """``fail`` ends the run with BudgetExceeded; ``suspend`` parks it (status ``waiting``,
    waiting for ``tether.budget``) until `App.raise_budget` gives it a new budget."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "max_duration" and isinstance(value, timedelta):
                value = value.total_seconds()
            if isinstance(value, int | float) and value < 0:
                raise UserError(f"Budget({f.name}={value}) must not be negative")
        if self.on_exceed not in ("fail", "suspend"):
            raise UserError(f"Budget(on_exceed={self.on_exceed!r}) must be 'fail' or 'suspend'")

    @property
    def duration_seconds(self) -> float | None:
        d = self.max_duration
        return d.total_seconds() if isinstance(d, timedelta) else d

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["max_duration"] = self.duration_seconds
        return {k: v for k, v in data.items() if v is not None and v != "fail"}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Budget | None:
        if not data:
            return None
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def merged(self, other: Budget | None) -> Budget:
        """The tighter of two budgets, limit by limit."""
        if other is None:
            return self
        values: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "on_exceed":
                continue
            mine = self.duration_seconds if f.name == "max_duration" else getattr(self, f.name)
            theirs = (
                other.duration_seconds if f.name == "max_duration" else getattr(other, f.name)
            )
            values[f.name] = (
                mine if theirs is None else theirs if mine is None else min(mine, theirs)
            )
        suspend = "suspend" in (self.on_exceed, other.on_exceed)
        return Budget(**values, on_exceed="suspend" if suspend else "fail")

    def check(
        self,
        *,
        spent: Usage,
        steps: int = 0,
        elapsed: float = 0.0,
        estimate: Usage = ZERO,
        scope: str = "run",
        run_id: str | None = None,
    ) -> None:
        """Raise `BudgetExceeded` if `spent` plus `estimate` passes a limit.

        A limit is exceeded when the spend *after* the next operation would be above it, so a
        budget of 8 model calls allows exactly 8.
        """
        after = spent + estimate
        where = f"run {run_id}" if run_id else "run"
        if scope != "run":
            where += f", {scope}"
        if self.max_cost_usd is not None and estimate.unpriced_calls:
            # An unpriced operation counted as $0 would pass every dollar cap unseen.
            raise BudgetExceeded(
                f"{where}: budget max_cost_usd={self.max_cost_usd} cannot be enforced: the next "
                "operation has no known price; price its model (tether.observe."
                "set_price_overrides) or remove max_cost_usd",
                run_id=run_id,
                limit="max_cost_usd",
                details={"limit": "max_cost_usd", "max": self.max_cost_usd, "unpriced": True,
                         "scope": scope},
            )
        checks: list[tuple[str, float | None, float, str]] = [
            ("max_llm_calls", self.max_llm_calls, after.llm_calls, "model calls"),
            ("max_tool_calls", self.max_tool_calls, after.tool_calls, "tool calls"),
            ("max_tokens", self.max_tokens, after.tokens, "tokens"),
            ("max_cost_usd", self.max_cost_usd, after.cost_usd, "USD"),
            ("max_steps", self.max_steps, steps, "steps"),
            ("max_duration", self.duration_seconds, elapsed, "seconds"),
        ]
        for name, limit, value, unit in checks:
            if limit is not None and value > limit:
                shown_spent = {
                    "max_llm_calls": spent.llm_calls,
                    "max_tool_calls": spent.tool_calls,
                    "max_tokens": spent.tokens,
                    "max_cost_usd": round(spent.cost_usd, 6),
                    "max_steps": steps - 1 if steps else 0,
                    "max_duration": round(elapsed, 3),
                }[name]
                raise BudgetExceeded(
                    f"{where}: budget {name}={limit} reached ({shown_spent} {unit} spent, the "
                    f"next operation would make it {round(value, 6)}); raise the budget or "
                    "narrow the task",
                    run_id=run_id,
                    limit=name,
                    details={
                        "limit": name,
                        "max": limit,
                        "spent": shown_spent,
                        "would_be": value,
                        "scope": scope,
                    },
                )
