"""The durable execution engine: the `Runtime` (workflow and step registry, client API, worker
launch), workflows, steps, journal and replay, the worker. `tether.app.App` builds on it.

Names load on first use, so importing one engine module (`tether.engine.budget` from the CLI)
does not import them all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether.engine.budget import Budget, Usage
    from tether.engine.context import Context, StepContext, current_step
    from tether.engine.handles import RunHandle
    from tether.engine.records import RunInfo, StepInfo
    from tether.engine.retention import Retention
    from tether.engine.retry import Retry
    from tether.engine.runtime import Runtime

_LAZY = {
    "RunHandle": "tether.engine.handles",
    "Runtime": "tether.engine.runtime",
    "Budget": "tether.engine.budget",
    "Usage": "tether.engine.budget",
    "Context": "tether.engine.context",
    "StepContext": "tether.engine.context",
    "current_step": "tether.engine.context",
    "RunInfo": "tether.engine.records",
    "StepInfo": "tether.engine.records",
    "Retention": "tether.engine.retention",
    "Retry": "tether.engine.retry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tether.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Budget",
    "Context",
    "Retention",
    "Retry",
    "RunHandle",
    "RunInfo",
    "Runtime",
    "StepContext",
    "StepInfo",
    "Usage",
    "current_step",
]
