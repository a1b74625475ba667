"""Observability: spans, stats, change detection, stuck vs slow, cost and attribution.

Everything here reads the journal the engine already writes (runs and steps with their usage
and meta); nothing adds a write to the step path.

* `spans` / `export` — the span tree of a run (OpenTelemetry GenAI names), exported over OTLP
* `stats` — per node / model / prompt version / app version / label figures
* `changes` — Mann-Whitney U and two-proportion tests between fingerprints or time windows
* `health` — `assess(run, steps, stats)`: ok, slow or stuck, with the reason
* `cost` / `attribution` / `limits` — pricing, spend by owner, spend limits per label
* `alerts` / `webhook` — stuck runs, changes, spend thresholds and unserved versions, recorded
  once and POSTed to a webhook at least once
* `metrics` — Prometheus text and OpenTelemetry metrics read from the store
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether.observe.alerts import AlertConfig
    from tether.observe.alerts import configure as configure_alerts
    from tether.observe.attribution import CostRow, NodeSummary, cost_report, node_summary
    from tether.observe.changes import Change, detect_changes
    from tether.observe.cost import Price, PriceOverride, price_call, set_price_overrides
    from tether.observe.export import instrument
    from tether.observe.fingerprint import fingerprint
    from tether.observe.health import (
        Baselines,
        Verdict,
        assess,
        latency_baselines,
        render_verdict,
    )
    from tether.observe.limits import SpendLimit, check_spend, set_spend_limits
    from tether.observe.metrics import instrument_metrics
    from tether.observe.spans import Span, build_spans
    from tether.observe.stats import StatsRow, stats_report

# Imported on first use: `import tether` must not pay for genai-prices or the report code.
_WHERE = {
    "AlertConfig": "alerts", "instrument_metrics": "metrics",
    "CostRow": "attribution", "NodeSummary": "attribution", "cost_report": "attribution",
    "node_summary": "attribution", "Change": "changes", "detect_changes": "changes",
    "Price": "cost", "PriceOverride": "cost", "price_call": "cost",
    "set_price_overrides": "cost", "instrument": "export", "fingerprint": "fingerprint",
    "Baselines": "health", "Verdict": "health", "assess": "health",
    "latency_baselines": "health", "render_verdict": "health", "SpendLimit": "limits",
    "check_spend": "limits", "set_spend_limits": "limits", "Span": "spans",
    "build_spans": "spans", "StatsRow": "stats", "stats_report": "stats",
}


def __getattr__(name: str) -> Any:
    if name == "configure_alerts":
        return importlib.import_module("tether.observe.alerts").configure
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tether.observe' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tether.observe.{module}"), name)


__all__ = [
    "AlertConfig",
    "Baselines",
    "Change",
    "CostRow",
    "NodeSummary",
    "Price",
    "PriceOverride",
    "Span",
    "SpendLimit",
    "StatsRow",
    "Verdict",
    "assess",
    "build_spans",
    "check_spend",
    "configure_alerts",
    "cost_report",
    "detect_changes",
    "fingerprint",
    "instrument",
    "instrument_metrics",
    "latency_baselines",
    "node_summary",
    "price_call",
    "render_verdict",
    "set_price_overrides",
    "set_spend_limits",
    "stats_report",
]
