"""Control-flow signals between workflow code, the context and the executor.

They derive from `BaseException` so that `except Exception` in workflow code cannot swallow
them; the executor catches each and does what it says.
"""

from __future__ import annotations

from collections.abc import Sequence


class Suspend(BaseException):
    """Park the run: release the lease, drop the coroutine, wake at `wake_at` or on a signal
    (`waiting_for`: one name, or several for `Context.wait_for_any`)."""

    def __init__(
        self, *, wake_at: float | None, waiting_for: str | Sequence[str] | None = None
    ) -> None:
        super().__init__(f"suspend (wake_at={wake_at}, waiting_for={waiting_for})")
        self.wake_at = wake_at
        self.waiting_for = waiting_for


class CancelRun(BaseException):
    """A cancel request reached a step boundary: end the run as ``cancelled``."""


class DropRun(BaseException):
    """This worker lost the lease: stop touching the run and forget it."""


class RefuseRun(BaseException):
    """End the run with status ``refused`` and this reason (an out-of-scope request)."""

    def __init__(self, reason: str, *, details: dict[str, object] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details or {}
