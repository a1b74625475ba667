"""Provider rate limits: `App.rate_limit("openai:gpt-4.1-mini", requests=300, per=...)`.

A model step asks for capacity (`acquire_capacity`) right before it sends its request; the
store keeps one sliding log of grants per limit for every worker (store/ratelimits_sql.py).
A request that would go over the limit waits instead of being sent and answered 429: a short
wait sleeps in the step, a longer one (`DURABLE_AFTER` seconds in all) ends the attempt with
`RateLimited`, whose ``retry_after`` the step's retry policy honours — a backoff that long is a
durable sleep, so the worker is released meanwhile.

Each limit keeps headroom for clock and network jitter: its window is `HEADROOM` longer than
declared (plus `HEADROOM_SECONDS`), so requests granted in any declared window never arrive at
the provider more than the limit apart even when their travel times differ.

A grant is recorded when it is given, and stamped again when its request was answered: the
provider counts a request when it arrives, which on a busy worker may be seconds after the
grant, and by the answer it has surely arrived. A request that fails (or whose worker dies
before sending it) still counts — the count errs on the side of fewer requests.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from tether.errors import UserError

HEADROOM = 0.02
"""A limit's window is this fraction longer than declared ..."""
HEADROOM_SECONDS = 0.2
"""... plus this many seconds."""
DURABLE_AFTER = 5.0
"""A step waits for capacity in the worker for less than this in all (the wait counts against
the step's timeout); a longer wait suspends the run (as `Retry.durable_after` does)."""
RATE_WAIT = "tether.rate_limit.wait_seconds"
"""Step meta: the seconds a model step waited for rate-limit capacity before it was sent."""


class RateLimited(Exception):
    """A model request would exceed a rate limit for `retry_after` seconds (long enough to
    suspend the run rather than wait in the step); the step's retry policy waits it out."""

    retryable = True
    waiting_for_capacity = True
    """Retried whatever the attempts so far: waiting is not failing."""

    def __init__(self, pattern: str, retry_after: float) -> None:
        super().__init__(f"rate limit {pattern!r} is full for {retry_after:.1f}s; waiting")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A limit on the requests (and tokens) sent to one model or one provider."""

    pattern: str
    """``provider:model`` for one model, ``provider:*`` for every model of a provider."""
    requests: int | None
    tokens: int | None
    per: float
    """The window, in seconds."""

    @property
    def window(self) -> float:
        """The window enforced: `per` with headroom for jitter."""
        return self.per * (1 + HEADROOM) + HEADROOM_SECONDS

    def matches(self, label: str) -> bool:
        if self.pattern.endswith(":*"):
            return label.startswith(self.pattern[:-1])
        return label == self.pattern


def make_limit(
    pattern: str, requests: int | None, tokens: int | None, per: timedelta | float
) -> RateLimit:
    """Validate `App.rate_limit`'s arguments."""
    if not pattern or ":" not in pattern:
        raise UserError(
            f"app.rate_limit({pattern!r}): name a model as 'provider:model' or a provider as "
            "'provider:*' (e.g. 'openai:gpt-4.1-mini', 'openai:*')"
        )
    seconds = cast(object, per.total_seconds() if isinstance(per, timedelta) else per)
    if (isinstance(seconds, bool) or not isinstance(seconds, int | float)
            or not 0 < seconds < math.inf):
        raise UserError(f"app.rate_limit({pattern!r}): per must be a positive number of seconds "
                        f"or a timedelta, got {per!r}")
    if requests is None and tokens is None:
        raise UserError(f"app.rate_limit({pattern!r}): give requests=, tokens= or both")
    for what, value in (("requests", cast(object, requests)), ("tokens", cast(object, tokens))):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise UserError(f"app.rate_limit({pattern!r}): {what} must be an integer of at "
                            f"least 1, got {value!r}")
    return RateLimit(pattern, requests, tokens, float(cast(float, seconds)))


@dataclass(slots=True)
class Capacity:
    """What `acquire_capacity` got: `settle` it once the request was answered."""

    grant: str | None
    waited: float

    async def settle(self, app: Any) -> None:
        """Count the request in its windows from now, when it surely reached the provider."""
        if self.grant is not None:
            await app.store.settle_rate(self.grant)


async def acquire_capacity(app: Any, label: str, tokens: int = 0) -> Capacity:
    """Wait until every rate limit of `app` matching the model `label` grants one request of
    about `tokens` tokens. Raises `RateLimited` when the wait would reach `DURABLE_AFTER`
    seconds in all (the run then suspends instead)."""
    limits: list[RateLimit] = [
        limit for limit in getattr(app, "rate_limits", {}).values() if limit.matches(label)
    ]
    if not limits:
        return Capacity(None, 0.0)
    grant = uuid.uuid4().hex
    started = time.monotonic()
    for limit in limits:
        while True:
            wait = await app.store.acquire_rate(
                limit.pattern, requests=limit.requests, tokens=limit.tokens,
                window=limit.window, cost=tokens if limit.tokens is not None else 0,
                grant=grant,
            )
            if wait <= 0:
                break
            if time.monotonic() - started + wait >= DURABLE_AFTER:
                # Waiting in the step counts against its timeout: a long wait parks the run.
                raise RateLimited(limit.pattern, wait)
            await asyncio.sleep(wait)
    return Capacity(grant, time.monotonic() - started)
