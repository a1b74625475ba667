"""tether: a durable runtime for LLM agents.

Every model call, tool call, timer and human decision is journaled; a crashed worker's runs
resume elsewhere from the last completed step. See README.md and docs/ for the tour.
"""

from tether.agents import (
    Agent,
    Loop,
    Parallel,
    Scope,
    ScriptedModel,
    Sequential,
    TetherDurability,
    ToolContext,
    tool,
)
from tether.engine import (
    App,
    Budget,
    Context,
    Retry,
    RunHandle,
    RunInfo,
    StepContext,
    StepInfo,
    Usage,
    current_step,
)
from tether.errors import (
    BudgetExceeded,
    LeaseLost,
    NonDeterminismError,
    RunCancelled,
    RunError,
    RunFailed,
    RunRefused,
    SignalTimeout,
    StepFailed,
    StoreError,
    StoreUnavailable,
    TetherError,
    UnknownRun,
    UnknownWorkflow,
    UserError,
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

__version__ = "0.1.0"

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
    "LeaseLost",
    "Loop",
    "NonDeterminismError",
    "Parallel",
    "Policy",
    "Retry",
    "RunCancelled",
    "RunError",
    "RunFailed",
    "RunHandle",
    "RunInfo",
    "RunRefused",
    "Scope",
    "ScriptedModel",
    "Sequential",
    "SignalTimeout",
    "SpendLimit",
    "StepContext",
    "StepFailed",
    "StepInfo",
    "StoreError",
    "StoreUnavailable",
    "TetherDurability",
    "TetherError",
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
