"""What alerts watch and where they go: `AlertConfig`, shared by the watcher
(`tether.observe.alerts`) and the sender (`tether.observe.webhook`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tether.errors import UserError
from tether.observe.health import DEFAULT_K, DEFAULT_STALL_AFTER

KINDS = ("stuck", "change", "spend", "unserved")
"""The conditions an alert can be raised for."""


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """What is watched and where alerts go (see the module docstring)."""

    webhook: str | None = None
    """The URL alerts are POSTed to; ``None``: recorded and listed only (another worker with a
    webhook delivers them)."""
    kinds: tuple[str, ...] = KINDS
    """Which conditions are watched."""
    every: float = 5.0
    """Seconds between two evaluations on one worker."""
    stuck_after: float = DEFAULT_STALL_AFTER
    """A running run with no progress for this long is stuck (when its step has no history;
    with history, `slow_k` times ten of the step's usual p95, but never less than this)."""
    slow_k: float = DEFAULT_K
    spend_thresholds: tuple[float, ...] = (0.8, 1.0)
    """Fractions of a spend limit that each raise one alert per window."""
    unserved_after: float = 60.0
    """Seconds a workflow version must stay unserved before it is an alert (a rolling deploy
    is not an incident)."""
    repeat_after: float = 86400.0
    """An ``unserved`` condition that lasts is raised again after this long."""
    changes_every: float = 300.0
    """Seconds between two change-detection passes on one worker (they read the journal)."""
    changes_window: float = 86400.0
    """How far back change detection looks."""
    max_attempts: int = 8
    """Delivery attempts before the alert is marked ``failed``."""
    backoff: float = 2.0
    """Seconds before the first retry; doubled for each further one."""
    max_backoff: float = 300.0
    timeout: float = 10.0
    """Seconds one POST may take."""
    delivery_lease: float = 60.0
    """How long a worker holds an alert it is sending; another worker sends it again (same
    id) when the holder died. Must exceed `timeout`."""
    headers: Mapping[str, str] = field(default_factory=dict[str, str])
    """Extra HTTP headers for the webhook (e.g. ``Authorization``)."""
    transport: Any = None
    """An ``httpx`` transport (tests: ``httpx.MockTransport``); ``None``: the network."""

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown:
            raise UserError(
                f"alerts: unknown kind(s) {', '.join(unknown)}; use some of {', '.join(KINDS)}"
            )
        for name in ("every", "stuck_after", "slow_k", "changes_every", "changes_window",
                     "backoff", "max_backoff", "timeout", "delivery_lease", "repeat_after"):
            if getattr(self, name) <= 0:
                raise UserError(f"alerts: {name} must be positive, got {getattr(self, name)}")
        if self.unserved_after < 0:
            raise UserError(f"alerts: unserved_after must not be negative, got {self.unserved_after}")
        if self.max_attempts < 1:
            raise UserError(f"alerts: max_attempts must be at least 1, got {self.max_attempts}")
        if self.delivery_lease <= self.timeout:
            raise UserError(
                f"alerts: delivery_lease ({self.delivery_lease:g}s) must exceed timeout "
                f"({self.timeout:g}s), or a slow POST would be sent twice"
            )
        for t in self.spend_thresholds:
            if not 0 < t <= 10:
                raise UserError(
                    f"alerts: spend threshold {t!r} is not a fraction of the limit; use e.g. "
                    "(0.8, 1.0) for 80 % and 100 %"
                )
        for name, value in dict(self.headers).items():
            # Checked here, not when the first alert is sent: httpx refuses a non-ASCII header
            # when the watcher builds its client, which stopped the whole watcher on every
            # worker (no alert recorded either) with only a log line.
            if not (isinstance(name, str) and isinstance(value, str)
                    and name.isascii() and value.isascii()):
                raise UserError(
                    f"alerts: header {name!r}: {value!r} is not ASCII text; HTTP headers must "
                    "be (a pasted '…' placeholder?)"
                )
        if self.webhook is not None and not self.webhook.startswith(("http://", "https://")):
            raise UserError(
                f"alerts: webhook {self.webhook!r} is not an http(s) URL; give e.g. "
                "https://hooks.example.com/tether"
            )
