"""Retry policy for steps: exponential backoff with jitter, bounded attempts and delay."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Retry:
    """How a step retries transient failures.

    Failed attempts are journaled, so a worker crash does not reset the count. A backoff of at
    least `durable_after` seconds becomes a durable sleep: the run is suspended and the worker
    released until the next attempt is due.
    """

    max_attempts: int = 3
    """Attempts in total, including the first (1 means no retry)."""
    initial_delay: float = 0.2
    """Seconds before the second attempt."""
    max_delay: float = 30.0
    """Upper bound of any single backoff, in seconds (a provider's Retry-After may exceed it)."""
    backoff: float = 2.0
    """Multiplier between consecutive delays."""
    jitter: float = 0.2
    """Each delay is scaled by a random factor in ``[1 - jitter, 1 + jitter]``."""
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    """Exception types that are retried."""
    give_up_on: tuple[type[BaseException], ...] = ()
    """Exception types never retried, even when they match `retry_on`."""
    durable_after: float = 5.0
    """Backoffs at least this long suspend the run instead of sleeping in the worker."""

    def __post_init__(self) -> None:
        from tether.errors import UserError

        if self.max_attempts < 1:
            raise UserError(f"Retry(max_attempts={self.max_attempts}) must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise UserError("Retry delays must not be negative")

    def should_retry(self, error: BaseException, failures: int) -> bool:
        """Whether to try again after `failures` failed attempts ending in `error`."""
        if getattr(error, "waiting_for_capacity", False):
            return True  # not a failure: a rate limit's wait (tether.engine.ratelimits)
        if failures >= self.max_attempts:
            return False
        if getattr(error, "retryable", True) is False:
            return False
        if self.give_up_on and isinstance(error, self.give_up_on):
            return False
        return isinstance(error, self.retry_on)

    def delay(self, failures: int, error: BaseException | None = None) -> float:
        """Seconds to wait after `failures` failed attempts. An error carrying a
        ``retry_after`` attribute (a provider's Retry-After) is honoured as a minimum."""
        base = min(self.max_delay, self.initial_delay * self.backoff ** max(0, failures - 1))
        if self.jitter:
            base *= random.uniform(1 - self.jitter, 1 + self.jitter)
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after > base:
            return float(retry_after)
        return max(0.0, base)


NO_RETRY = Retry(max_attempts=1)
