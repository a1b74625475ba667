"""What a running step sees of itself: `StepContext` (`tether.current_step()`), and the records
a step's failure and arguments are journaled as.

`Context` executes the step (`tether.engine.context`) and makes its `StepContext` current for
the step's code with `enter_step` / `leave_step`.
"""

from __future__ import annotations

import traceback
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from tether.engine.budget import ZERO, Usage
from tether.engine.serde import to_jsonable
from tether.errors import UserError

_current_step: ContextVar[StepContext | None] = ContextVar("tether_step", default=None)


def current_step() -> StepContext:
    """The step being executed (run id, sequence number, attempt, idempotency key)."""
    step = _current_step.get()
    if step is None:
        raise UserError("tether.current_step() was called outside a running step")
    return step


def enter_step(step: StepContext) -> Token[StepContext | None]:
    """Make `step` the current step of the calling task; `leave_step` with the token after."""
    return _current_step.set(step)


def leave_step(token: Token[StepContext | None]) -> None:
    _current_step.reset(token)


@dataclass(slots=True)
class StepContext:
    """What a running step may know about itself, and where it reports what it spent."""

    run_id: str
    seq: int
    name: str
    attempt: int
    labels: dict[str, str]
    usage: Usage = ZERO
    meta: dict[str, Any] = field(default_factory=dict[str, Any])

    @property
    def idempotency_key(self) -> str:
        """Stable across retries and worker takeovers: hand it to the outside system."""
        return f"{self.run_id}:{self.seq}"

    def add_usage(self, usage: Usage) -> None:
        """Charge what this step spent to the run's ledger (journaled with the outcome)."""
        self.usage = self.usage + usage

    def set_meta(self, **attributes: Any) -> None:
        """Attach attributes (model, fingerprint…) journaled with the step's outcome."""
        self.meta.update(attributes)


def error_record(exc: BaseException, *, timeout: float | None = None) -> dict[str, Any]:
    message = str(exc)
    if isinstance(exc, TimeoutError) and not message and timeout is not None:
        message = f"timed out after {timeout}s"
    record: dict[str, Any] = {"type": type(exc).__name__, "message": message or repr(exc)}
    tb = "".join(traceback.format_exception(exc, limit=-8))
    record["traceback"] = tb[-4000:]
    return record


def describe_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A step's arguments as journaled: JSON when they are, their reprs otherwise."""
    try:
        return to_jsonable({"args": list(args), "kwargs": kwargs}, what="step arguments")
    except UserError:
        return {"args": [repr(a)[:200] for a in args], "kwargs": {k: repr(v)[:200] for k, v in kwargs.items()}}
