"""Titanium: the sales research agent of Google's AI Agent Clinic, built with tether.

research the company → plan searches → find case studies → select → draft (self-checked) →
send (risk ``send``: held for a human's approval). Offline by default — a bundled knowledge
base searched with SQLite FTS5 and a deterministic scripted model; set
``TETHER_MODEL=openai:gpt-4.1-mini`` (and the provider's key) to use a real model.

``python -m tether worker --app tether.examples.titanium:app`` (or
``python -m tether.examples.titanium``) runs a worker for it.

Environment: ``TETHER_STORE`` (the store), ``TETHER_MODEL``, ``TETHER_LEASE_SECONDS``,
``TITANIUM_LATENCY`` (seconds added to each scripted model call), ``TITANIUM_CALL_LOG`` (a file
the scripted model appends one line to per call), ``TITANIUM_OUTBOX`` (where sent emails go).

The offline scripted model has no price of its own; it is priced at the genai-prices rates of
`PRICED_AS` (``openai:gpt-4.1-mini``), so the demo's cost figures are what that model would have
cost for the same tokens.
"""

from __future__ import annotations

import os

from pydantic_ai.models import Model

import tether
from tether.examples.titanium.pipeline import build, sent_emails
from tether.examples.titanium.script import SCRIPTED_MODEL_NAME, scripted_model
from tether.observe.cost import borrowed_rates, set_price_overrides

PRICED_AS = "openai:gpt-4.1-mini"
"""Whose prices the offline scripted model borrows."""


def titanium_model() -> Model | str:
    """``$TETHER_MODEL`` when set (a real provider), else the offline scripted model."""
    name = os.environ.get("TETHER_MODEL")
    if name:
        return name
    return scripted_model(latency=float(os.environ.get("TITANIUM_LATENCY") or 0.0),
                          call_log=os.environ.get("TITANIUM_CALL_LOG") or None)


pipeline = build(titanium_model())
app = tether.App(
    policy=tether.Policy({"read": "auto", "send": "review"}, default="review"),
    lease_seconds=float(os.environ.get("TETHER_LEASE_SECONDS") or 10.0),
)
app.register(pipeline)
if not os.environ.get("TETHER_MODEL"):
    set_price_overrides(app, {SCRIPTED_MODEL_NAME: borrowed_rates(PRICED_AS)})

SAMPLE_COMPANY = "Acme Robotics"

__all__ = ["PRICED_AS", "SAMPLE_COMPANY", "app", "build", "pipeline", "scripted_model", "sent_emails",
           "titanium_model"]
