"""Agents: durable tool-calling loops composed into pipelines of narrow nodes.

Every model request and every tool call is one journaled engine step; a pipeline is a workflow.
See docs/agents.md.

Names load on first use, so the trust layer can read the tool-call seam (`tether.agents.gate`)
without importing pydantic-ai.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether.agents.agent import Agent
    from tether.agents.capabilities import TetherLoopGuard, TetherScope, TetherTrust
    from tether.agents.durability import TetherDurability
    from tether.agents.errors import AgentFailed, LoopGuardTripped, OutputInvalid
    from tether.agents.models import ProviderError
    from tether.agents.offline import ScriptedModel
    from tether.agents.pipeline import (
        ChildWorkflow,
        Fallback,
        Loop,
        Optional,
        Parallel,
        Sequential,
    )
    from tether.agents.scope import Scope, ScopeVerdict
    from tether.agents.state import RunState
    from tether.agents.tools import Tool, ToolContext, tool

_LAZY = {
    "Agent": "tether.agents.agent",
    "TetherLoopGuard": "tether.agents.capabilities",
    "TetherScope": "tether.agents.capabilities",
    "TetherTrust": "tether.agents.capabilities",
    "TetherDurability": "tether.agents.durability",
    "AgentFailed": "tether.agents.errors",
    "LoopGuardTripped": "tether.agents.errors",
    "OutputInvalid": "tether.agents.errors",
    "ProviderError": "tether.agents.models",
    "ScriptedModel": "tether.agents.offline",
    "ChildWorkflow": "tether.agents.pipeline",
    "Fallback": "tether.agents.pipeline",
    "Loop": "tether.agents.pipeline",
    "Optional": "tether.agents.pipeline",
    "Parallel": "tether.agents.pipeline",
    "Sequential": "tether.agents.pipeline",
    "Scope": "tether.agents.scope",
    "ScopeVerdict": "tether.agents.scope",
    "RunState": "tether.agents.state",
    "Tool": "tether.agents.tools",
    "ToolContext": "tether.agents.tools",
    "tool": "tether.agents.tools",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tether.agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Agent",
    "AgentFailed",
    "ChildWorkflow",
    "Fallback",
    "Loop",
    "LoopGuardTripped",
    "Optional",
    "OutputInvalid",
    "Parallel",
    "ProviderError",
    "RunState",
    "Scope",
    "ScopeVerdict",
    "ScriptedModel",
    "Sequential",
    "TetherDurability",
    "TetherLoopGuard",
    "TetherScope",
    "TetherTrust",
    "Tool",
    "ToolContext",
    "tool",
]
