"""The journals a report reads: runs active in a time window, with their inherited labels.

Stats, change detection and cost reports all start from `load_window`: one store query for the
runs and their journals, plus a lookup of parents outside the window so that a child run
inherits its parent's labels (the child's own labels win).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tether.errors import UserError
from tether.observe import names as n
from tether.store.base import RunRecord, StepRecord, Store

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | float | timedelta) -> float:
    """``90s``, ``15m``, ``12h``, ``7d``, ``2w`` (or seconds, or a timedelta) -> seconds."""
    if isinstance(text, timedelta):
        return text.total_seconds()
    if isinstance(text, int | float):
        return float(text)
    match = _DURATION.match(text)
    if match is None:
        raise UserError(
            f"cannot read the duration {text!r}; write a number and a unit, e.g. 30m, 12h, 7d"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True, slots=True)
class RunJournal:
    """One run of a window: its record, its journal and its effective labels."""

    run: RunRecord
    steps: list[StepRecord]
    labels: dict[str, str]
    """The run's labels over those inherited from its ancestors."""

    def leaf_steps(self, since: float, until: float) -> Iterator[StepRecord]:
        """Function steps (model calls, tool calls, plain steps) that ended in the window."""
        for rec in self.steps:
            if rec.kind != "step" or rec.status not in ("completed", "failed"):
                continue
            if rec.finished_at is None or not since <= rec.finished_at < until:
                continue
            yield rec


def store_of(source: Any) -> Store:
    """The store of an App, or the store itself."""
    return source.store if hasattr(source, "store") else source


async def load_window(
    source: Any, since: float | None = None, until: float | None = None
) -> list[RunJournal]:
    """Runs active between `since` and `until` (Unix seconds; default: everything, now) from
    an App or a Store, with labels inherited from parent runs."""
    store = store_of(source)
    pairs = await store.load_window(since or 0.0, until if until is not None else time.time())
    runs: dict[str, RunRecord] = {run.id: run for run, _ in pairs}
    effective: dict[str, dict[str, str]] = {}

    async def labels_of(run: RunRecord, depth: int = 0) -> dict[str, str]:
        cached = effective.get(run.id)
        if cached is not None:
            return cached
        labels = dict(run.labels)
        if run.parent_id and depth < 32:  # a fork chain, not a cycle; bounded anyway
            parent = runs.get(run.parent_id) or await store.get_run(run.parent_id)
            if parent is not None:
                runs[parent.id] = parent
                labels = {**await labels_of(parent, depth + 1), **labels}
        effective[run.id] = labels
        return labels

    return [RunJournal(run, steps, await labels_of(run)) for run, steps in pairs]


def step_model(rec: StepRecord) -> str | None:
    meta = rec.meta or {}
    model = meta.get(n.RESPONSE_MODEL) or meta.get(n.REQUEST_MODEL)
    return None if model is None else str(model)


def is_model_call(rec: StepRecord) -> bool:
    return (rec.meta or {}).get(n.OPERATION_NAME) == n.OP_CHAT


def dimension_value(dimension: str, journal: RunJournal, rec: StepRecord) -> str | None:
    """The value of a report dimension for one step: ``node``, ``model``, ``provider``,
    ``version`` (prompt hash), ``prompt``, ``tools``, ``app_version``, ``workflow``, ``step``,
    ``operation``, ``status``; ``label:<key>`` or any other name is a run label."""
    meta = rec.meta or {}
    if dimension == "node":
        value = meta.get(n.NODE)
    elif dimension == "model":
        value = step_model(rec)
    elif dimension == "provider":
        value = meta.get(n.PROVIDER_NAME)
    elif dimension in ("version", "prompt"):
        value = meta.get(n.PROMPT_HASH)
    elif dimension == "tools":
        value = meta.get(n.TOOLS_HASH)
    elif dimension == "app_version":
        value = meta.get(n.APP_VERSION)
    elif dimension == "workflow":
        value = journal.run.workflow
    elif dimension == "step":
        value = rec.name
    elif dimension == "operation":
        value = meta.get(n.OPERATION_NAME) or rec.kind
    elif dimension == "status":
        value = journal.run.status
    else:
        key = dimension.removeprefix("label:")
        value = journal.labels.get(key)
    return None if value is None else str(value)


def parse_dimensions(text: str | list[str] | tuple[str, ...] | None, default: str) -> list[str]:
    """``"team,model"`` -> ``["team", "model"]``."""
    if text is None or text == "":
        text = default
    parts = text.split(",") if isinstance(text, str) else list(text)
    dims = [p.strip() for p in parts if p.strip()]
    if not dims:
        raise UserError("--by needs at least one dimension, e.g. --by node,model")
    for dim in dims:
        if dim in ("label", "label:"):
            raise UserError(f"--by {dim} needs the label's key, e.g. --by label:team")
    return dims


KNOWN_DIMENSIONS = (
    "node", "model", "provider", "version", "prompt", "tools", "app_version", "workflow",
    "step", "operation", "status",
)
"""Dimensions read from steps and runs; any other name is a run label key."""


def check_dimensions(
    dimensions: list[str], journals: list[RunJournal], default: str = ""
) -> None:
    """Reject a bare name that is neither a known dimension nor a label key of any run in the
    window (a typo like ``--by bogus`` would otherwise give one silent ``-`` group). An explicit
    ``label:<key>`` is always accepted: a key no run carries yet is a legitimate question."""
    # The report's own default (``team`` in cost's ``team,model``) is always a fair question.
    unknown = [d for d in dimensions if d not in KNOWN_DIMENSIONS and not d.startswith("label:")
               and d not in default.split(",")]
    if not unknown:
        return
    keys = sorted({key for journal in journals for key in journal.labels
                   if not key.startswith("tether.")})
    for dim in unknown:
        if dim not in keys:
            labels = ", ".join(keys) if keys else "none in this window"
            raise UserError(
                f"--by {dim!r} is not a dimension or a label key; use one of "
                f"{', '.join(KNOWN_DIMENSIONS)}, a label key ({labels}), or label:<key>"
            )


def display_names(dimensions: list[str]) -> list[str]:
    """Column names for dimensions: ``label:team`` is shown as ``team``."""
    return [d.removeprefix("label:") for d in dimensions]
