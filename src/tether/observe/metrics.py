"""Metrics for the dashboards operators already run: Prometheus text on ``GET /metrics`` of
`tether serve`, and the same figures as OpenTelemetry metrics (`instrument_metrics`).

Everything is read from the store when scraped, so every worker's runs count, whichever host
it runs on. Two kinds of figures:

* **State now** (gauges, one query each): runs by workflow and status, the backlog per queue
  (runs due and not claimed, and how long the oldest has waited), live workers.
* **What happened** (counters and a histogram): each scrape reads the steps journaled since
  the previous one — a window reaching back `overlap` seconds, deduplicated by run and
  sequence number so a step journaled a moment after it finished is still counted once — and
  adds their latency (by node), outcome, model calls, tokens and cost (by model and the
  configured run labels) to counters kept by this process since it started. As with any
  exporter, they restart at zero with the process; use ``rate()`` / ``increase()``.

Label cardinality is bounded: nodes, models, workflows, statuses and queues come from code
and configuration; of each run label key given in `labels`, at most `max_label_values`
distinct values get a series of their own, the rest are counted under ``other``.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tether.observe import names as n
from tether.observe.window import is_model_call, load_window, step_model

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
           300.0, 900.0)
"""Step duration histogram bounds in seconds (plus +Inf): tool calls to long model calls."""
OVERLAP = 30.0
NONE = "none"
OTHER = "other"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state-now figures of one scrape."""

    at: float
    runs: Sequence[tuple[str, str, int]]
    """``(workflow, status, count)``."""
    backlog: Sequence[tuple[str, int, float]]
    """``(queue, runs due and unclaimed, seconds the oldest has waited)``."""
    workers: int


@dataclass(slots=True)
class _Latency:
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1


StepListener = Callable[[str, float, str], None]
"""``(node, seconds, outcome)`` for each newly counted step (the OpenTelemetry histogram)."""


class Metrics:
    """The figures of one store, refreshed at each scrape (see the module docstring)."""

    def __init__(
        self, store: Any, *, labels: Sequence[str] = (), max_label_values: int = 100,
        overlap: float = OVERLAP, since: float | None = None,
    ) -> None:
        self.store = store
        self.labels = tuple(labels)
        self.max_label_values = max_label_values
        self.overlap = overlap
        self.watermark = time.time() if since is None else since
        """Steps that finished before this were counted (or predate this process)."""
        self.latency: dict[str, _Latency] = {}
        self.steps: dict[tuple[str, str], int] = {}
        self.calls: dict[tuple[str, ...], int] = {}
        self.tokens: dict[tuple[str, ...], int] = {}
        self.cost: dict[tuple[str, ...], float] = {}
        self.listeners: list[StepListener] = []
        self._seen: dict[tuple[str, int], float] = {}
        self._values: dict[str, set[str]] = {key: set() for key in self.labels}
        self._lock = threading.Lock()

    async def refresh(self, now: float | None = None) -> Snapshot:
        """Read the state now and count the steps journaled since the last refresh."""
        now = time.time() if now is None else now
        runs = await self.store.run_counts()
        backlog = [
            (NONE if queue is None else queue, count, max(0.0, now - (oldest or now)))
            for queue, count, oldest in await self.store.queue_backlog(now)
        ]
        workers = len(await self.store.list_workers())
        since = self.watermark - self.overlap
        journals = await load_window(self.store, since, now)
        with self._lock:
            for journal in journals:
                for rec in journal.leaf_steps(since, now):
                    key = (rec.run_id, rec.seq)
                    if key in self._seen:
                        continue
                    self._seen[key] = rec.finished_at or now
                    self._count(rec, journal.labels)
            self.watermark = max(self.watermark, now)
            cutoff = self.watermark - 2 * self.overlap
            self._seen = {k: t for k, t in self._seen.items() if t >= cutoff}
        return Snapshot(now, runs, backlog, workers)

    def _label_values(self, labels: dict[str, str]) -> tuple[str, ...]:
        values: list[str] = []
        for key in self.labels:
            value = labels.get(key)
            if value is None:
                values.append(NONE)
                continue
            seen = self._values[key]
            if value not in seen and len(seen) >= self.max_label_values:
                values.append(OTHER)
                continue
            seen.add(value)
            values.append(value)
        return tuple(values)

    def _count(self, rec: Any, labels: dict[str, str]) -> None:
        meta = rec.meta or {}
        node = str(meta.get(n.NODE) or rec.name)
        outcome = "completed" if rec.status == "completed" else "failed"
        self.steps[(node, outcome)] = self.steps.get((node, outcome), 0) + 1
        if rec.started_at is not None and rec.finished_at is not None:
            seconds = max(0.0, rec.finished_at - rec.started_at)
            self.latency.setdefault(node, _Latency()).observe(seconds)
            for listener in self.listeners:
                listener(node, seconds, outcome)
        usage = rec.usage or {}
        if not usage and not is_model_call(rec):
            return
        model = step_model(rec) or NONE
        tail = self._label_values(labels)
        key = (model, *tail)
        calls = int(usage.get("llm_calls") or (1 if is_model_call(rec) else 0))
        if calls:
            self.calls[key] = self.calls.get(key, 0) + calls
        for direction in ("input", "output"):
            count = int(usage.get(f"{direction}_tokens") or 0)
            if count:
                tkey = (model, direction, *tail)
                self.tokens[tkey] = self.tokens.get(tkey, 0) + count
        cost = float(usage.get("cost_usd") or 0.0)
        if cost:
            self.cost[key] = self.cost.get(key, 0.0) + cost


# --- Prometheus ----------------------------------------------------------------------------------


def _require_prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:  # pragma: no cover - a base dependency
        raise ImportError(
            "the /metrics endpoint needs prometheus-client; install it with "
            "`pip install prometheus-client`"
        ) from exc
    return prometheus_client


def prometheus_text(metrics: Metrics, snapshot: Snapshot) -> tuple[bytes, str]:
    """``(body, content type)`` of the Prometheus text exposition of the figures."""
    prom = _require_prometheus()
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    labels = list(metrics.labels)

    def families() -> Iterable[Any]:
        runs = GaugeMetricFamily("tether_runs", "Runs in the store by workflow and status",
                                 labels=["workflow", "status"])
        for workflow, status, count in snapshot.runs:
            runs.add_metric([workflow, status], count)
        yield runs
        depth = GaugeMetricFamily(
            "tether_queue_depth", "Runs due and not yet claimed, by queue ('none': no queue)",
            labels=["queue"])
        wait = GaugeMetricFamily(
            "tether_queue_oldest_wait_seconds",
            "How long the longest-waiting due run of the queue has waited to be claimed",
            labels=["queue"])
        for queue, count, oldest in snapshot.backlog:
            depth.add_metric([queue], count)
            wait.add_metric([queue], oldest)
        yield depth
        yield wait
        yield GaugeMetricFamily("tether_workers_live", "Live workers in the registry",
                                value=snapshot.workers)
        with metrics._lock:  # pyright: ignore[reportPrivateUsage]
            latency = HistogramMetricFamily(
                "tether_step_duration_seconds",
                "Duration of steps journaled since this process started, by node",
                labels=["node"])
            for node, figures in sorted(metrics.latency.items()):
                running = 0
                cumulative: list[tuple[str, float]] = []
                for bound, count in zip((*BUCKETS, math.inf), figures.buckets, strict=True):
                    running += count
                    cumulative.append(("+Inf" if bound == math.inf else f"{bound:g}", running))
                latency.add_metric([node], cumulative, sum_value=figures.total)
            yield latency
            steps = CounterMetricFamily("tether_steps", "Steps journaled, by node and outcome",
                                        labels=["node", "outcome"])
            for (node, outcome), count in sorted(metrics.steps.items()):
                steps.add_metric([node, outcome], count)
            yield steps
            calls = CounterMetricFamily("tether_model_calls", "Model calls, by model and label",
                                        labels=["model", *labels])
            for key, count in sorted(metrics.calls.items()):
                calls.add_metric(list(key), count)
            yield calls
            tokens = CounterMetricFamily(
                "tether_tokens", "Model tokens, by model, direction (input/output) and label",
                labels=["model", "direction", *labels])
            for key, count in sorted(metrics.tokens.items()):
                tokens.add_metric(list(key), count)
            yield tokens
            cost = CounterMetricFamily("tether_cost_usd", "Model spend in USD, by model and label",
                                       labels=["model", *labels])
            for key, usd in sorted(metrics.cost.items()):
                cost.add_metric(list(key), usd)
            yield cost

    class _Collector:
        def collect(self) -> Iterable[Any]:
            return families()

    registry = prom.CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST


# --- OpenTelemetry -------------------------------------------------------------------------------


_METRICS_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class _Cached:
    """One refresh serves every callback of one collection (they run back to back)."""

    def __init__(self, metrics: Metrics, run: Callable[[Any], Snapshot], ttl: float = 1.0) -> None:
        self.metrics = metrics
        self.run = run
        self.ttl = ttl
        self.snapshot: Snapshot | None = None
        self.at = 0.0

    def get(self) -> Snapshot | None:
        if self.snapshot is None or time.monotonic() - self.at > self.ttl:
            try:
                self.snapshot = self.run(self.metrics.refresh())
            except Exception:  # the store is down: report nothing rather than stale figures
                self.snapshot = None
                return None
            self.at = time.monotonic()
        return self.snapshot


def instrument_metrics(
    app: Any, reader: Any = None, *, metrics: Metrics | None = None,
    labels: Sequence[str] = (),
) -> Any:
    """Export the figures as OpenTelemetry metrics through `reader` (default: a periodic OTLP/
    HTTP exporter when ``OTEL_EXPORTER_OTLP_(METRICS_)ENDPOINT`` is set; else nothing, ``None``
    returned). Returns the `MeterProvider`; call its ``shutdown()`` when done. The figures are
    read from `app`'s store on the App's own event loop at each collection."""
    import os

    if reader is None:
        if not any(os.environ.get(v) for v in _METRICS_ENDPOINT_VARS):
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        except ImportError as exc:
            raise ImportError(
                "OTLP metric export needs opentelemetry-exporter-otlp-proto-http; install it "
                "with `pip install 'tether[otel]'`"
            ) from exc
        reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    try:
        from opentelemetry.metrics import CallbackOptions, Observation
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.resources import Resource
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "OpenTelemetry metrics need opentelemetry-sdk; install it with "
            "`pip install 'tether[otel]'`"
        ) from exc
    from tether._version import __version__

    figures = metrics or Metrics(app.store, labels=labels)
    cached = _Cached(figures, app.portal.run)
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "tether")}),
    )
    meter = provider.get_meter("tether", __version__)
    label_keys = list(figures.labels)

    def observe(build: Callable[[Snapshot], list[Observation]]) -> Callable[[CallbackOptions], list[Observation]]:
        def callback(options: CallbackOptions) -> list[Observation]:
            snapshot = cached.get()
            return [] if snapshot is None else build(snapshot)
        return callback

    meter.create_observable_gauge(
        "tether.runs", [observe(lambda s: [
            Observation(c, {"workflow": w, "status": st}) for w, st, c in s.runs])],
        description="Runs in the store by workflow and status", unit="{run}")
    meter.create_observable_gauge(
        "tether.queue.depth", [observe(lambda s: [
            Observation(c, {"queue": q}) for q, c, _ in s.backlog])],
        description="Runs due and not yet claimed, by queue", unit="{run}")
    meter.create_observable_gauge(
        "tether.queue.oldest_wait", [observe(lambda s: [
            Observation(w, {"queue": q}) for q, _, w in s.backlog])],
        description="How long the longest-waiting due run of the queue has waited", unit="s")
    meter.create_observable_gauge(
        "tether.workers.live", [observe(lambda s: [Observation(s.workers)])],
        description="Live workers in the registry", unit="{worker}")

    def labelled(key: tuple[str, ...], first: Sequence[str]) -> dict[str, str]:
        return dict(zip([*first, *label_keys], key, strict=True))

    meter.create_observable_counter(
        "tether.steps", [observe(lambda s: [
            Observation(c, {"node": node, "outcome": o}) for (node, o), c in figures.steps.items()])],
        description="Steps journaled, by node and outcome", unit="{step}")
    meter.create_observable_counter(
        "tether.model.calls", [observe(lambda s: [
            Observation(c, labelled(k, ["gen_ai.request.model"])) for k, c in figures.calls.items()])],
        description="Model calls, by model and label", unit="{call}")
    meter.create_observable_counter(
        "tether.tokens", [observe(lambda s: [
            Observation(c, labelled(k, ["gen_ai.request.model", "gen_ai.token.type"]))
            for k, c in figures.tokens.items()])],
        description="Model tokens, by model, type (input/output) and label", unit="{token}")
    meter.create_observable_counter(
        "tether.cost", [observe(lambda s: [
            Observation(c, labelled(k, ["gen_ai.request.model"])) for k, c in figures.cost.items()])],
        description="Model spend, by model and label", unit="USD")
    duration = meter.create_histogram(
        "tether.step.duration", unit="s", description="Duration of journaled steps, by node",
        explicit_bucket_boundaries_advisory=list(BUCKETS))
    figures.listeners.append(
        lambda node, seconds, outcome: duration.record(seconds, {"node": node, "outcome": outcome})
    )
    return provider

