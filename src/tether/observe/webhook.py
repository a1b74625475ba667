"""Alert delivery: a JSON POST per alert, at least once, retried with backoff, never dropped.

A worker claims the pending alerts that are due with a lease (`Store.claim_alerts`, one
attempt counted per claim), POSTs each and records the outcome under that lease
(`Store.settle_alert`): a 2xx answer marks it ``delivered``; anything else schedules a retry
after `backoff` doubled per attempt, until `max_attempts`, after which it is ``failed`` with
the last error. The payload's ``id`` and the ``Idempotency-Key`` header are the alert's id, the
same on every attempt and from every worker, so a receiver that keeps the ids it has seen
deduplicates the resend that at-least-once delivery allows (see `tether.observe.alerts`).

Payload (``Content-Type: application/json``)::

    {"id": "al_…", "kind": "stuck", "subject": "run-…", "summary": "run … is stuck: …",
     "text": "[tether stuck] run … is stuck: …", "details": {…},
     "created_at": "2026-12-01T17:02:03.123456+00:00", "attempt": 1, "source": "tether"}

``text`` repeats the summary so chat webhooks (Slack, Mattermost) show it as they are.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from tether.store.base import AlertRecord, Store

if TYPE_CHECKING:
    from tether.observe.alert_config import AlertConfig

log = logging.getLogger("tether.alerts")

CLAIM_BATCH = 20


def payload(alert: AlertRecord) -> dict[str, Any]:
    """The JSON body sent for one attempt of `alert`."""
    return {
        "id": alert.id,
        "kind": alert.kind,
        "subject": alert.subject,
        "summary": alert.summary,
        "text": f"[tether {alert.kind}] {alert.summary}",
        "details": alert.details or {},
        "created_at": datetime.fromtimestamp(alert.created_at, UTC).isoformat(),
        "attempt": alert.attempts,
        "source": "tether",
    }


def retry_delay(config: AlertConfig, attempts: int) -> float:
    """Seconds before the attempt after `attempts` failed ones."""
    return min(config.max_backoff, config.backoff * 2 ** max(0, attempts - 1))


class Webhook:
    """Sends one worker's claimed alerts to the configured URL."""

    def __init__(self, store: Store, config: AlertConfig, owner: str) -> None:
        if not config.webhook:
            raise ValueError("a Webhook needs config.webhook")
        self.store = store
        self.config = config
        self.url = config.webhook
        self.owner = owner
        from tether._version import __version__

        self._client = httpx.AsyncClient(
            timeout=config.timeout,
            transport=config.transport,
            headers={"User-Agent": f"tether/{__version__}", **dict(config.headers)},
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def deliver_due(self) -> int:
        """Claim and send the alerts that are due; returns how many were delivered."""
        # Alerts are pending only while they are being sent or retried: a read first keeps an
        # idle fleet from taking the store's write lock every second to claim nothing.
        if not await self.store.list_alerts(state="pending", limit=1):
            return 0
        delivered = 0
        while True:
            claimed = await self.store.claim_alerts(
                self.owner, limit=CLAIM_BATCH, lease_seconds=self.config.delivery_lease
            )
            for alert in claimed:
                delivered += await self.send(alert)
            if len(claimed) < CLAIM_BATCH:
                return delivered

    async def send(self, alert: AlertRecord) -> bool:
        """One attempt for a claimed alert, its outcome recorded; True when delivered."""
        if alert.attempts > self.config.max_attempts:
            # Claimed past its last attempt: a worker died during that attempt.
            await self.store.settle_alert(
                alert.id, self.owner, delivered=False,
                error=alert.last_error or f"gave up after {self.config.max_attempts} attempts",
            )
            return False
        error = await self.post(alert)
        if error is None:
            if not await self.store.settle_alert(alert.id, self.owner, delivered=True):
                log.info("alert %s delivered after its lease ran out; it may be sent again",
                         alert.id)
            return True
        last = alert.attempts >= self.config.max_attempts
        retry_at = None if last else time.time() + retry_delay(self.config, alert.attempts)
        await self.store.settle_alert(
            alert.id, self.owner, delivered=False, error=error, retry_at=retry_at
        )
        if last:
            log.error("alert %s [%s] not delivered after %d attempts, marked failed: %s",
                      alert.id, alert.kind, alert.attempts, error)
        else:
            log.warning("alert %s: delivery attempt %d failed (%s); retrying in %.1fs",
                        alert.id, alert.attempts, error, (retry_at or 0) - time.time())
        return False

    async def post(self, alert: AlertRecord) -> str | None:
        """POST the alert; ``None`` on a 2xx answer, else what went wrong (one line)."""
        headers = {"Idempotency-Key": alert.id, "X-Tether-Alert-Attempt": str(alert.attempts)}
        try:
            response = await self._client.post(self.url, json=payload(alert), headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if 200 <= response.status_code < 300:
            return None
        body = " ".join(response.text.split())[:200]
        return f"HTTP {response.status_code}{': ' + body if body else ''}"
