"""Agents: durable tool-calling loops composed into pipelines of narrow nodes.

Every model request and every tool call is one journaled engine step; a pipeline is a workflow.
See docs/agents.md.
"""

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
