"""Why an agent node fails: each names the node, the run and what to do."""

from __future__ import annotations

from typing import Any

from tether.errors import RunFailed


class AgentFailed(RunFailed):
    """An agent node could not produce its output; `node` names it."""

    def __init__(
        self, message: str, *, node: str, run_id: str | None = None, error_type: str = "AgentFailed",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, run_id=run_id, error_type=error_type,
                         details={"node": node, **(details or {})})
        self.node = node


class OutputInvalid(AgentFailed):
    """The model's output stayed invalid (or failed its checks) after every re-ask."""

    def __init__(self, message: str, *, node: str, run_id: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message, node=node, run_id=run_id, error_type="OutputInvalid",
                         details=details)


class LoopGuardTripped(AgentFailed):
    """The model asked for the same tool call with the same arguments too many times."""

    def __init__(self, message: str, *, node: str, run_id: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message, node=node, run_id=run_id, error_type="LoopGuardTripped",
                         details=details)
