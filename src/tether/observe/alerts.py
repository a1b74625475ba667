"""Alerts: what pages the on-call person, found by the workers and recorded once in the store.

``tether.observe.alerts.configure(app, webhook="https://…")`` (or ``$TETHER_ALERT_WEBHOOK`` for
`tether worker`) has every worker of the App, every `every` seconds:

1. **Detect** four conditions, each occurrence with a key of its own:

   * ``stuck`` — a running run judged stuck (`tether.observe.health.assess`: its heartbeat is
     lost, its step is past its timeout, or nothing moved for `stuck_after`); one alert per
     run and holder (key: run id + fencing token), so a run taken over and stuck again pages
     again;
   * ``change`` — change detection (`tether.observe.changes`) flags a node's latency, cost
     or failure rate moving between two fingerprints (model, prompt version, app version);
     one alert per flagged comparison, ever;
   * ``spend`` — a label spend limit (`tether.observe.limits`) passes each of
     `spend_thresholds` (80 % and 100 % by default) of its window; 100 % also when a run of
     the label failed on the limit (a reservation refused the next call, so the journaled
     spend itself may stay just under it); at most one alert per threshold per window length;
   * ``unserved`` — queued or waiting runs of a workflow version no live worker serves (a
     deploy dropped it), for longer than `unserved_after`; repeated every `repeat_after`
     while it lasts.

2. **Record** each occurrence with `Store.record_alert`: insert-if-absent by key (and, for
   ``spend`` and ``unserved``, no second alert of the series within its quiet period), so with
   any number of workers each occurrence is recorded **exactly once**.

3. **Deliver** pending alerts to the webhook (`tether.observe.webhook`): claimed with a lease,
   POSTed as JSON with the alert's id as the idempotency key, retried with backoff, given up
   after `max_attempts` and then marked ``failed`` — visible in `tether alerts`, never silently
   dropped. Delivery is **at least once**: a worker that dies after the receiver answered and
   before it recorded the answer leaves the alert to another worker, which sends it again with
   the same id.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from tether.engine.background import add_background_task
from tether.engine.presence import coverage
from tether.errors import UserError
from tether.observe.alert_config import KINDS, AlertConfig
from tether.observe.health import (
    Baselines,
    assess,
    latency_baselines,
)
from tether.observe.limits import spend_limits
from tether.observe.webhook import Webhook
from tether.store.base import ALERT_STATES, AlertRecord, NewAlert, RunRecord

log = logging.getLogger("tether.alerts")

_KEY = "tether.observe.alerts"
WEBHOOK_ENV = "TETHER_ALERT_WEBHOOK"
_BASELINES_EVERY = 300.0
"""How often (seconds) a worker re-reads the usual step durations stuck verdicts compare with."""
_RUNNING_LIMIT = 1000
_ASK_AGAIN = 60.0


def configure(app: Any, webhook: str | None = None, **options: Any) -> AlertConfig:
    """Watch `app` for alerts on every worker of it and send them to `webhook` (see
    `AlertConfig` for the options). Calling it again replaces the configuration."""
    config = AlertConfig(webhook=webhook, **options)
    app.extensions[_KEY] = config
    add_background_task(app, keep_watch)
    return config


def alert_config(app: Any) -> AlertConfig | None:
    """The App's alert configuration, if any."""
    found = app.extensions.get(_KEY)
    return found if isinstance(found, AlertConfig) else None


def alert_json(alert: AlertRecord) -> dict[str, Any]:
    """An alert as `tether alerts --json` prints it and ``GET /api/alerts`` returns it."""
    def iso(moment: float | None) -> str | None:
        return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat()

    return {
        "id": alert.id, "kind": alert.kind, "subject": alert.subject, "summary": alert.summary,
        "created_at": iso(alert.created_at), "state": alert.state, "attempts": alert.attempts,
        "next_attempt_at": iso(alert.next_attempt_at) if alert.state == "pending" else None,
        "delivered_at": iso(alert.delivered_at), "last_error": alert.last_error,
        "details": alert.details,
    }


async def list_alerts(
    source: Any, *, kind: str | None = None, state: str | None = None,
    since: float | None = None, limit: int = 100,
) -> list[AlertRecord]:
    """The recorded alerts, newest first (from an App or a Store), filters checked."""
    if kind is not None and kind not in (*KINDS, "test"):
        raise UserError(f"kind {kind!r} is not an alert kind; use one of {', '.join((*KINDS, 'test'))}")
    if state is not None and state not in ALERT_STATES:
        raise UserError(
            f"state {state!r} is not a delivery state; use one of {', '.join(ALERT_STATES)}"
        )
    store = source.store if hasattr(source, "store") else source
    return await store.list_alerts(kind=kind, state=state, since=since, limit=limit)


def configure_from_env(app: Any) -> AlertConfig | None:
    """`configure` with ``$TETHER_ALERT_WEBHOOK`` when it is set and the App configured no
    webhook itself (what `tether worker` calls)."""
    url = os.environ.get(WEBHOOK_ENV, "").strip()
    existing = alert_config(app)
    if not url or (existing is not None and existing.webhook):
        return existing
    if existing is not None:
        options = {f: getattr(existing, f) for f in existing.__dataclass_fields__ if f != "webhook"}
        return configure(app, url, **options)
    return configure(app, url)


# --- detection -----------------------------------------------------------------------------------


class AlertWatch:
    """One worker's detector: what it remembers between evaluations (usual step durations, when
    an unserved version was first seen, when changes were last checked)."""

    def __init__(self, app: Any, config: AlertConfig) -> None:
        self.app = app
        self.config = config
        self._baselines: Baselines | None = None
        self._baselines_at = 0.0
        self._unserved_since: dict[tuple[str, str | None], float] = {}
        self._changes_at = 0.0
        self._asked: dict[str, float] = {}
        """Occurrence key (or series) -> until when it is known stored: a condition that lasts
        costs one insert attempt per worker, not one per evaluation."""

    async def evaluate(self, now: float | None = None) -> list[AlertRecord]:
        """Detect every watched condition once; returns the alerts this call recorded (an
        occurrence another worker recorded first is not among them)."""
        now = time.time() if now is None else now
        found: list[NewAlert] = []
        kinds = self.config.kinds
        for kind, detect in (("stuck", self.stuck), ("unserved", self.unserved),
                             ("spend", self.spend), ("change", self.changes)):
            if kind not in kinds:
                continue
            try:
                found += await detect(now)
            except Exception as exc:  # one failing detector must not silence the others
                log.warning("alerts: could not check %s (%s); will try again", kind, exc)
        recorded: list[AlertRecord] = []
        for alert in found:
            mark = alert.series or alert.key
            if self._asked.get(mark, 0.0) > now:
                continue  # stored already (by this worker or another): no write to learn it
            record = await self.app.store.record_alert(alert)
            if alert.quiet_seconds <= 0:
                self._asked[mark] = math.inf
            else:  # another worker may have recorded it a little earlier: ask again sooner
                self._asked[mark] = now + (
                    alert.quiet_seconds if record else min(alert.quiet_seconds, _ASK_AGAIN)
                )
            if record is not None:
                log.warning("alert %s [%s] %s", record.id, record.kind, record.summary)
                recorded.append(record)
        # Forget occurrences no longer detected (a stuck run finished): memory stays bounded.
        detected = {a.series or a.key for a in found}
        self._asked = {k: t for k, t in self._asked.items() if k in detected or t > now}
        return recorded

    async def stuck(self, now: float) -> list[NewAlert]:
        store = self.app.store
        runs: list[RunRecord] = await store.list_runs(status="running", limit=_RUNNING_LIMIT)
        if not runs:
            return []
        if self._baselines is None or now - self._baselines_at > _BASELINES_EVERY:
            # A day of history (not `tether runs`' week): this runs on every worker.
            self._baselines = await latency_baselines(self.app, since=now - 86400, until=now)
            self._baselines_at = now
        lease = float(getattr(self.app, "lease_seconds", 10.0))
        found: list[NewAlert] = []
        for run in runs:
            # A lease that just ran out is a takeover about to happen, not an incident: a dead
            # worker's runs are taken over within a poll, a paused one's within a lease.
            if run.lease_expires is not None and run.lease_expires < now < run.lease_expires + lease:
                continue
            steps = [] if run.progress else await store.load_steps(run.id)
            verdict = assess(run, steps, self._baselines, now=now, k=self.config.slow_k,
                             stall_after=self.config.stuck_after)
            if verdict.verdict != "stuck":
                continue
            found.append(NewAlert(
                key=f"stuck:{run.id}:{run.fencing}",
                kind="stuck",
                subject=run.id,
                summary=f"run {run.id} ({_label(run.workflow, run.version)}) is stuck: "
                        f"{verdict.reason}",
                details={"run_id": run.id, "workflow": run.workflow, "version": run.version,
                         "labels": run.labels, "worker": run.lease_owner, **verdict.to_dict()},
            ))
        return found

    async def unserved(self, now: float) -> list[NewAlert]:
        store = self.app.store
        pending = await store.pending_versions()
        live = await coverage(store)
        counts: dict[tuple[str, str | None], dict[str, int]] = {}
        for workflow, version, status, count in pending:
            if not live.serves(workflow, version):
                counts.setdefault((workflow, version), {})[status] = count
        for pair in list(self._unserved_since):
            if pair not in counts:
                del self._unserved_since[pair]
        found: list[NewAlert] = []
        for (workflow, version), by_status in sorted(counts.items(), key=lambda i: (i[0][0], i[0][1] or "")):
            since = self._unserved_since.setdefault((workflow, version), now)
            if now - since < self.config.unserved_after:
                continue
            what = _label(workflow, version)
            gap = live.gap(workflow, version)
            total = sum(by_status.values())
            series = f"unserved:{workflow}:{version or '*'}"
            found.append(NewAlert(
                key=f"{series}@{now:.3f}",
                series=series,
                quiet_seconds=self.config.repeat_after,
                kind="unserved",
                subject=what,
                summary=f"{total} run(s) of {what} wait and no live worker serves them: {gap}",
                details={"workflow": workflow, "version": version, "runs": by_status,
                         "reason": gap},
            ))
        return found

    async def spend(self, now: float) -> list[NewAlert]:
        store = self.app.store
        found: list[NewAlert] = []
        for limit in spend_limits(self.app):
            window = limit.window.total_seconds()
            spent, unpriced = await store.label_spend(limit.label, limit.value, now - window)
            fraction = spent / limit.max_usd if limit.max_usd > 0 else (1.0 if spent > 0 else 0.0)
            refused = None
            if fraction < max(self.config.spend_thresholds, default=0) and 1.0 in self.config.spend_thresholds:
                refused = await _refused_run(store, limit.label, limit.value, now - window)
            subject = f"{limit.label}={limit.value}"
            for threshold in sorted(self.config.spend_thresholds):
                hit = fraction >= threshold or (threshold == 1.0 and refused is not None)
                if not hit:
                    continue
                series = f"spend:{subject}:{threshold:g}"
                why = (f"${spent:.4f} spent of ${limit.max_usd:g} ({fraction:.0%})"
                       if fraction >= threshold else
                       f"run {refused} was refused a model call by the limit "
                       f"(${spent:.4f} journaled, {fraction:.0%}; the rest was held by calls "
                       "in flight, or cut by a worker's crash)")
                found.append(NewAlert(
                    key=f"{series}@{int(now // window)}",
                    series=series,
                    quiet_seconds=window,
                    kind="spend",
                    subject=subject,
                    summary=f"spend limit {limit.describe()} passed {threshold:.0%}: {why}",
                    details={"label": limit.label, "value": limit.value,
                             "max_usd": limit.max_usd, "window_seconds": window,
                             "spent_usd": spent, "fraction": fraction, "threshold": threshold,
                             "unpriced_calls": unpriced, "refused_run": refused},
                ))
        return found

    async def changes(self, now: float) -> list[NewAlert]:
        if now - self._changes_at < self.config.changes_every:
            return []
        self._changes_at = now
        from tether.observe.changes import detect_changes

        found: list[NewAlert] = []
        for change in await detect_changes(self.app, since=now - self.config.changes_window,
                                           until=now):
            found.append(NewAlert(
                key=(f"change:{change.node}:{change.metric}:{change.dimension}:"
                     f"{change.baseline}->{change.candidate}"),
                kind="change",
                subject=change.node,
                summary=f"change detected: {change.describe()}",
                details=change.to_dict(),
            ))
        return found


async def _refused_run(store: Any, label: str, value: str, since: float) -> str | None:
    """A run of the label that failed on the spend limit in the window, if any."""
    runs: Sequence[RunRecord] = await store.list_runs(
        status="failed", labels={label: value}, since=since, limit=50
    )
    for run in runs:
        details = (run.error or {}).get("details") or {}
        if isinstance(details, dict) and details.get("limit") == "spend_limit":
            return run.id
    return None


def _label(workflow: str, version: str | None) -> str:
    return workflow if version is None else f"{workflow} v{version}"


# --- the worker task -----------------------------------------------------------------------------


def webhook_host(url: str) -> str:
    """The webhook as logs and messages show it: chat webhooks keep their secret in the path."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…"


def watcher_name() -> str:
    """This process's name as an alert lease holder."""
    return f"{socket.gethostname()}-{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def keep_watch(app: Any, stop: asyncio.Event) -> None:
    """The background task every worker of a configured App runs: evaluate every `every`
    seconds, deliver what is due every second (retries wait for their backoff)."""
    config = alert_config(app)
    if config is None:
        return
    watch = AlertWatch(app, config)
    sender = Webhook(app.store, config, watcher_name()) if config.webhook else None
    log.info("alerts: watching %s every %gs; %s", ", ".join(config.kinds), config.every,
             f"sending to {webhook_host(config.webhook)}" if config.webhook
             else "no webhook here: recorded for `tether alerts` and other workers to send")
    tick = min(1.0, config.every)
    next_evaluation = time.monotonic() + random.uniform(0, tick)  # a fleet does not evaluate in step
    try:
        while not stop.is_set():
            if time.monotonic() >= next_evaluation:
                next_evaluation = time.monotonic() + config.every * random.uniform(0.9, 1.1)
                try:
                    await watch.evaluate()
                except Exception as exc:  # a store blip while recording: the next pass
                    log.warning("alerts: evaluation failed (%s); will try again", exc)
            if sender is not None:
                try:
                    await sender.deliver_due()
                except Exception as exc:  # a store blip: the alerts stay pending
                    log.warning("alerts: delivery pass failed (%s); will try again", exc)
            try:
                await asyncio.wait_for(stop.wait(), tick)
            except TimeoutError:
                pass
    finally:
        if sender is not None:
            await sender.close()
