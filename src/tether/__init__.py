"""tether: a durable runtime for LLM agents.

Every model call, tool call, timer and human decision is journaled; a crashed worker's runs
resume elsewhere from the last completed step. See README.md and docs/ for the tour.

Every name loads on first use (``tether.App`` loads `tether.app` and the engine, ``tether.Agent``
the agent layer…): a CLI command loads only what it runs, and a process that only runs plain workflows
never imports pydantic-ai.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tether._version import __version__
from tether.errors import (
    BudgetExceeded,
    LeaseLost,
    NonDeterminismError,
    RunCancelled,
    RunError,
    RunFailed,
    RunRefused,
    SchemaTooNew,
    SignalTimeout,
    StepFailed,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
    TetherError,
    UnknownRun,
    UnknownWorkflow,
    UserError,
)

if TYPE_CHECKING:
    from tether.agents import (
        Agent,
        Fallback,
        Loop,
        Optional,
        Parallel,
        Scope,
        ScriptedModel,
        Sequential,
        TetherDurability,
        TetherLoopGuard,
        TetherScope,
        TetherTrust,
        ToolContext,
        tool,
    )
    from tether.app import App
    from tether.engine import (
        Budget,
        Context,
        Retention,
        Retry,
        RunHandle,
        RunInfo,
        StepContext,
        StepInfo,
        Usage,
        current_step,
    )
    from tether.observe.limits import SpendLimit
    from tether.trust import (
        ActionRejected,
        Approval,
        CheckResult,
        Evidence,
        Policy,
        render_approval,
    )


_LAZY = {
    **dict.fromkeys(
        ("Budget", "Context", "Retention", "Retry", "RunHandle", "RunInfo",
         "StepContext", "StepInfo", "Usage", "current_step"),
        "tether.engine",
    ),
    "App": "tether.app",
    **dict.fromkeys(
        ("Agent", "Fallback", "Loop", "Optional", "Parallel", "Scope", "ScriptedModel",
         "Sequential", "TetherDurability", "TetherLoopGuard", "TetherScope", "TetherTrust",
         "ToolContext", "tool"),
        "tether.agents",
    ),
    "SpendLimit": "tether.observe.limits",
    **dict.fromkeys(
        ("ActionRejected", "Approval", "CheckResult", "Evidence", "Policy", "render_approval"),
        "tether.trust",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tether' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ActionRejected",
    "Agent",
    "App",
    "Approval",
    "Budget",
    "BudgetExceeded",
    "CheckResult",
    "Context",
    "Evidence",
    "Fallback",
    "LeaseLost",
    "Loop",
    "NonDeterminismError",
    "Optional",
    "Parallel",
    "Policy",
    "Retention",
    "Retry",
    "RunCancelled",
    "RunError",
    "RunFailed",
    "RunHandle",
    "RunInfo",
    "RunRefused",
    "SchemaTooNew",
    "Scope",
    "ScriptedModel",
    "Sequential",
    "SignalTimeout",
    "SpendLimit",
    "StepContext",
    "StepFailed",
    "StepInfo",
    "StoreError",
    "StoreNotFound",
    "StoreUnavailable",
    "TetherDurability",
    "TetherError",
    "TetherLoopGuard",
    "TetherScope",
    "TetherTrust",
    "ToolContext",
    "UnknownRun",
    "UnknownWorkflow",
    "Usage",
    "UserError",
    "__version__",
    "current_step",
    "render_approval",
    "tool",
]
