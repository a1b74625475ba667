"""The durable execution engine: App, workflows, steps, journal and replay, the worker."""

from tether.engine.app import App, RunHandle
from tether.engine.budget import Budget, Usage
from tether.engine.context import Context, StepContext, current_step
from tether.engine.records import RunInfo, StepInfo
from tether.engine.retention import Retention
from tether.engine.retry import Retry

__all__ = [
    "App",
    "Budget",
    "Context",
    "Retention",
    "Retry",
    "RunHandle",
    "RunInfo",
    "StepContext",
    "StepInfo",
    "Usage",
    "current_step",
]
