"""Every error tether raises, in one tree.

```
TetherError
├── UserError                  misuse of the API: bad input, unknown names, bad configuration
│   ├── UnknownRun
│   └── UnknownWorkflow
├── StepFailed                 a step failed for good (retries exhausted); raised inside the workflow
├── StoreError                 the store could not do what was asked (corrupt data, bad schema)
│   ├── StoreUnavailable       the database cannot be reached (after the store's own retries)
│   ├── StoreNotFound          no database where the store URL points (a missing directory…)
│   └── SchemaTooNew           the store was migrated by newer tether that older code must not use
└── RunError                   what happened to a run, raised to whoever waits for it
    ├── RunFailed
    │   ├── BudgetExceeded
    │   └── NonDeterminismError
    ├── RunRefused
    ├── RunCancelled
    └── LeaseLost
```

Control-flow signals (suspending a run, a cancellation reaching a step boundary) are not in
this tree: they derive from `BaseException` so that a workflow's `except Exception` cannot
swallow them. They live in `tether.engine.control`.

`SignalTimeout` is the one outlier: it derives from the builtin `TimeoutError`, because code that
waits for a signal with a timeout naturally catches `TimeoutError`.
"""

from __future__ import annotations

from typing import Any


class TetherError(Exception):
    """Base of every tether error."""


class UserError(TetherError):
    """The API was used wrongly; the message says what to change."""


class UnknownRun(UserError):
    """No run with this id exists in the store."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"no run with id {run_id!r} in this store; list runs with `tether runs` "
            "or check that --store / $TETHER_STORE points at the right database"
        )
        self.run_id = run_id


class UnknownWorkflow(UserError):
    """No workflow with this name is registered on the App."""

    def __init__(self, name: str, known: list[str]) -> None:
        hint = ", ".join(sorted(known)) or "none registered"
        super().__init__(f"unknown workflow {name!r} (known: {hint})")
        self.name = name


class StoreError(TetherError):
    """The store could not do what was asked."""


class StoreUnavailable(StoreError):
    """The database could not be reached even after the store's own retries.

    A worker that meets this while executing a run stops touching the run (it does not fail
    it); the lease expires and any worker takes the run over once the database is back.
    """


class StoreNotFound(StoreError):
    """There is no database where the store URL points and none can be created there (the
    SQLite file's directory does not exist), or a command that only reads refuses to create
    one. The message names the path and what to do."""


class SchemaTooNew(StoreError):
    """The store carries a migration that declares older code unsafe on it (it was migrated
    by a newer tether) and this code does not know that migration. Nothing was written; the
    message names the migration, the tether that applied it and what to do: upgrade tether on
    this host."""


class StepFailed(TetherError):
    """A step failed for good: its retries are exhausted or the error is not retryable.

    Raised inside the workflow at the step's call site, both when the step fails live and when
    the recorded failure is replayed, so workflow code behaves the same either way. The original
    exception (live only) is chained as ``__cause__``.
    """

    def __init__(self, step: str, seq: int, error_type: str, message: str, attempts: int) -> None:
        super().__init__(
            f"step {step!r} (#{seq}) failed after {attempts} attempt(s): {error_type}: {message}"
        )
        self.step = step
        self.seq = seq
        self.error_type = error_type
        self.error_message = message
        self.attempts = attempts


class SignalTimeout(TimeoutError):
    """`Context.wait_for_signal` reached its timeout before the signal arrived."""

    def __init__(self, name: str, run_id: str) -> None:
        super().__init__(f"run {run_id}: no signal {name!r} arrived before the timeout")
        self.signal = name
        self.run_id = run_id


class RunError(TetherError):
    """Something happened to a run; `run_id` says which."""

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class RunFailed(RunError):
    """The run ended with status ``failed``; `error_type` is the name of the error that ended it."""

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        error_type: str = "RunFailed",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, run_id=run_id)
        self.error_type = error_type
        self.details = details or {}


class BudgetExceeded(RunFailed):
    """A budget limit would be or was exceeded; the message names the limit and the spend."""

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        limit: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, run_id=run_id, error_type="BudgetExceeded", details=details)
        self.limit = limit


class NonDeterminismError(RunFailed):
    """Replay reached a sequence number whose recorded step differs from the one now called."""

    def __init__(
        self, *, run_id: str, seq: int, expected: str, found: str, message: str | None = None
    ) -> None:
        super().__init__(
            message
            or (
                f"run {run_id}: nondeterministic workflow at step #{seq}: the journal recorded "
                f"{expected!r} but the code now calls {found!r}. The workflow code changed "
                "while this run was in flight; bump the workflow version for new behaviour, "
                "or fork the run from an earlier step."
            ),
            run_id=run_id,
            error_type="NonDeterminismError",
            details={"seq": seq, "expected": expected, "found": found},
        )
        self.seq = seq
        self.expected = expected
        self.found = found


class RunRefused(RunError):
    """The run ended with status ``refused``: the request was outside the agent's scope."""

    def __init__(self, message: str, *, run_id: str | None = None, reason: str = "") -> None:
        super().__init__(message, run_id=run_id)
        self.reason = reason


class RunCancelled(RunError):
    """The run was cancelled before it finished."""


class LeaseLost(RunError):
    """This worker no longer holds the run's lease: another worker took it over.

    A worker that sees this drops the run; it never writes to it again.
    """


def error_from_record(run_id: str, status: str, error: dict[str, Any] | None) -> RunError:
    """Rebuild the client-side error for a finished run from its stored error record."""
    error = error or {}
    message = str(error.get("message") or f"run {run_id} ended with status {status}")
    kind = str(error.get("type") or "")
    details = dict(error.get("details") or {})
    if status == "refused":
        return RunRefused(message, run_id=run_id, reason=str(error.get("reason") or message))
    if status == "cancelled":
        return RunCancelled(message, run_id=run_id)
    if kind == "BudgetExceeded":
        return BudgetExceeded(message, run_id=run_id, limit=details.get("limit"), details=details)
    if kind == "NonDeterminismError" and {"seq", "expected", "found"} <= details.keys():
        return NonDeterminismError(
            run_id=run_id,
            seq=int(details["seq"]),
            expected=str(details["expected"]),
            found=str(details["found"]),
            message=message,
        )
    return RunFailed(message, run_id=run_id, error_type=kind or "RunFailed", details=details)
