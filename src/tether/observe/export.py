"""Export a run's spans over OpenTelemetry (OTLP) when it ends or suspends.

`instrument(app)` hooks a listener on ``app.executor.listeners``: after each execution segment
of a run (it finished, or suspended for a signal or timer) the run's span tree is rebuilt from
the journal and the spans that finished since the last export go to the span processor. No
write is added to the step path.

Without an explicit processor the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) setting turns the OTLP/HTTP exporter on; the exporter
reads the rest of the ``OTEL_EXPORTER_OTLP_*`` settings itself. The packages come with the
``otel`` extra (``pip install 'tether[otel]'``).

Spans queued at the end of a segment are flushed to the collector at once (one flush at a
time, in a thread), not when the batch's timer fires: a worker killed in between would lose
them, since nobody exports them again. Which spans were exported is remembered per process. When a run resumes in another process,
spans that ended before the run's last suspension are taken as already exported (by the worker
that suspended it); a step of a parallel branch that finished while the run was suspending may
then be exported twice, with the same ids.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import OrderedDict
from typing import Any

from tether.observe.spans import Span, build_spans
from tether.store.base import FINISHED_STATUSES, RunRecord, StepRecord

log = logging.getLogger("tether.observe")

EXTENSION_KEY = "tether.observe.export"
_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_REMEMBERED_RUNS = 10_000
FLUSH_TIMEOUT_MS = 10_000
"""How long one flush after a segment may wait for the collector."""
_SUSPENSION_MIN_SECONDS = 0.01
"""A wait shorter than this was satisfied at once (the signal was there): no suspension."""


def _require_sdk() -> Any:
    try:
        from opentelemetry.sdk import trace as sdk_trace
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "exporting spans needs opentelemetry-sdk; install it with "
            "`pip install 'tether[otel]'`"
        ) from exc
    return sdk_trace


def otlp_configured() -> bool:
    """True when an ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` is set."""
    return any(os.environ.get(var) for var in _ENDPOINT_VARS)


class SpanExport:
    """Sends each run's finished spans to an OpenTelemetry span processor, once."""

    def __init__(self, app: Any, processor: Any, *, service_name: str | None = None) -> None:
        sdk_trace = _require_sdk()
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        from tether._version import __version__

        self.app = app
        self.processor = processor
        self._readable = sdk_trace.ReadableSpan
        self._resource = Resource.create(
            {"service.name": service_name or os.environ.get("OTEL_SERVICE_NAME", "tether")}
        )
        self._scope = InstrumentationScope("tether", __version__)
        self._exported: OrderedDict[str, set[str]] = OrderedDict()
        self._shut = False
        self._flush_lock = threading.Lock()
        self._flush_wanted = False
        self._flushing = False

    async def on_run(self, run_id: str, status: str) -> None:
        """The executor listener: export what finished in this segment of the run."""
        store = self.app.store
        run = await store.get_run(run_id)
        if run is None:
            return
        steps = await store.load_steps(run_id)
        self.export(run, steps)

    def export(self, run: RunRecord, steps: list[StepRecord]) -> list[Span]:
        """Export the run's finished spans not exported before; returns them."""
        done = self._exported.get(run.id)
        if done is None:
            done = set()
            boundary = _last_suspension(steps)
        else:
            self._exported.move_to_end(run.id)
            boundary = None
        fresh: list[Span] = []
        for span in build_spans(run, steps):
            if span.end is None or span.span_id in done:
                continue
            if boundary is not None and span.end < boundary and span.parent_id is not None:
                done.add(span.span_id)
                continue
            fresh.append(span)
            done.add(span.span_id)
        if run.status in FINISHED_STATUSES:
            self._exported.pop(run.id, None)
        else:
            self._exported[run.id] = done
            while len(self._exported) > _REMEMBERED_RUNS:
                self._exported.popitem(last=False)
        for span in fresh:
            self.processor.on_end(self.to_otel(span))
        if fresh:
            self._flush_soon()
        return fresh

    def _flush_soon(self) -> None:
        """Send what this segment queued now, not when the batch's timer fires (5 s by
        default): a worker killed meanwhile would lose those spans for good, since a worker that
        resumes the run takes spans ended before the suspension as exported. One flush at a time
        off the event loop; segments ending meanwhile ride on the next."""
        with self._flush_lock:
            self._flush_wanted = True
            if self._flushing or self._shut:
                return
            self._flushing = True
        threading.Thread(target=self._flush_loop, name="tether-otlp-flush", daemon=True).start()

    def _flush_loop(self) -> None:
        while True:
            with self._flush_lock:
                if not self._flush_wanted or self._shut:
                    self._flushing = False
                    return
                self._flush_wanted = False
            try:
                self.processor.force_flush(FLUSH_TIMEOUT_MS)
            except Exception:  # a collector down: the batch keeps the spans and retries
                log.warning("OTLP: flushing spans failed", exc_info=True)

    def to_otel(self, span: Span) -> Any:
        """The OpenTelemetry SDK's ReadableSpan for one of our spans."""
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        def context(span_hex: str) -> SpanContext:
            return SpanContext(
                trace_id=int(span.trace_id, 16),
                span_id=int(span_hex, 16),
                is_remote=False,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )

        code = {"ok": StatusCode.OK, "error": StatusCode.ERROR}.get(span.status, StatusCode.UNSET)
        is_call = span.name.startswith(("chat ", "execute_tool "))
        return self._readable(
            name=span.name,
            context=context(span.span_id),
            parent=context(span.parent_id) if span.parent_id else None,
            resource=self._resource,
            attributes=span.attributes,
            kind=SpanKind.CLIENT if is_call else SpanKind.INTERNAL,
            status=Status(code, span.status_message if code == StatusCode.ERROR else None),
            start_time=int(span.start * 1e9),
            end_time=int((span.end or span.start) * 1e9),
            instrumentation_scope=self._scope,
        )

    def flush(self) -> None:
        """Send every span queued so far (at exit, or before a script hands over)."""
        if not self._shut:
            self.processor.force_flush()

    def shutdown(self) -> None:
        """Flush and stop the processor (call when the process stops)."""
        if self._shut:
            return
        self._shut = True
        self.processor.force_flush()
        self.processor.shutdown()


def instrument(
    app: Any, processor: Any = None, *, service_name: str | None = None
) -> SpanExport | None:
    """Export `app`'s runs as spans. Without `processor`, only when OTLP is configured in the
    environment (then a batching OTLP/HTTP exporter is used); returns ``None`` otherwise.
    Calling it twice on one App returns the first export."""
    existing = app.extensions.get(EXTENSION_KEY)
    if existing is not None:
        return existing
    if processor is None:
        if not otlp_configured():
            return None
        _require_sdk()
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ImportError(
                "OTLP export needs opentelemetry-exporter-otlp-proto-http; install it with "
                "`pip install 'tether[otel]'`"
            ) from exc
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        processor = BatchSpanProcessor(OTLPSpanExporter())
    export = SpanExport(app, processor, service_name=service_name)
    app.extensions[EXTENSION_KEY] = export
    app.executor.listeners.append(export.on_run)
    # A script that ends right after `app.run()` must not lose the batch still queued.
    atexit.register(export.flush)
    return export


def autoinstrument(app: Any) -> None:
    """What `tether.App` calls before it first runs: export `app`'s spans when OTLP is configured
    in the environment — under `tether worker`, and for `app.run()` in a script or notebook."""
    if otlp_configured():
        instrument(app)


def _last_suspension(steps: list[StepRecord]) -> float | None:
    """When the run last suspended on a wait that has since ended (a resume in another
    process): spans that ended before were exported by the worker that suspended it."""
    boundary: float | None = None
    for rec in steps:
        if (
            rec.kind in ("signal", "sleep")
            and rec.status in ("completed", "failed")
            and rec.started_at is not None
            and rec.finished_at is not None
            and rec.finished_at - rec.started_at >= _SUSPENSION_MIN_SECONDS
        ):
            boundary = rec.started_at if boundary is None else max(boundary, rec.started_at)
    return boundary
