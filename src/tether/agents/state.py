"""How state flows through a pipeline, and how instructions are templated from it.

A run's input is a JSON object. Each node's output (JSON) is kept under the node's name, so a
later node sees the input and every earlier output. Instructions and prompts may refer to them
with ``{name}`` or a dotted path ``{name.field.sub}``: a top-level input key (``{company}``), the
whole input (``{input.company}``) or an earlier node's output (``{researcher.industry}``). Other
braces (JSON examples in a prompt) are left alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tether.agents.gate import CheckResult
from tether.errors import UserError

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")


@dataclass
class RunState:
    """The input and the outputs of the nodes that ran so far, by node name."""

    input: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict[str, Any])
    checks: list[CheckResult] = field(default_factory=list[CheckResult])
    """Self-check results of earlier nodes, handed to the trust gate with later tool calls."""

    def lookup(self, path: str) -> Any:
        """The value at a dotted path; raises KeyError when it does not exist."""
        head, *rest = path.split(".")
        if head == "input":
            value: Any = self.input
        elif head in self.outputs:
            value = self.outputs[head]
        elif head in self.input:
            value = self.input[head]
        else:
            raise KeyError(head)
        for part in rest:
            if isinstance(value, dict):
                value = value[part]  # pyright: ignore[reportUnknownVariableType]
            elif isinstance(value, list) and part.isdigit():
                value = value[int(part)]  # pyright: ignore[reportUnknownVariableType]
            else:
                raise KeyError(part)
        return value  # pyright: ignore[reportUnknownVariableType]

    def as_prompt(self) -> str:
        """The default user message of a node: the input and earlier outputs as JSON."""
        data: dict[str, Any] = {"input": self.input}
        if self.outputs:
            data["outputs"] = self.outputs
        return json.dumps(data, indent=2, default=str)


def render(template: str, state: RunState, *, node: str, what: str) -> str:
    """Fill ``{placeholders}`` in `template` from `state`."""

    def fill(match: re.Match[str]) -> str:
        path = match.group(1)
        try:
            value = state.lookup(path)
        except (KeyError, IndexError):
            known = sorted({*state.input, *state.outputs, "input"})
            raise UserError(
                f"node {node!r}: its {what} refer to {{{path}}}, which the run state does not "
                f"have (known names: {', '.join(known)}); check the spelling, or the order of "
                "the pipeline's nodes"
            ) from None
        if isinstance(value, str):
            return value
        return json.dumps(value, default=str)

    return _PLACEHOLDER.sub(fill, template)
