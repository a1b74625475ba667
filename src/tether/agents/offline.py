"""Offline models: deterministic scripts that stand in for a provider in tests and the demo.

`ScriptedModel` is a pydantic-ai `FunctionModel` whose answer is chosen by a script per node:
the handler sees the node, its instructions, the user prompt and the tool results so far, and
returns a tool call, a structured output or text. No network, no randomness.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from tether.agents.output import OUTPUT_TOOL
from tether.errors import UserError


@dataclass(frozen=True)
class Turn:
    """What a script handler sees when its node asks the model."""

    node: str
    instructions: str
    prompt: str
    """The node's first user message (by default the run state as JSON)."""
    tool_results: list[tuple[str, Any]]
    """``(tool name, result)`` of every tool call answered so far, oldest first."""
    errors: list[str]
    """Errors sent back so far (invalid output, failed checks, bad tool calls)."""
    tools: list[str]
    """Names of the tools the node offers."""
    structured: bool
    """Whether the node expects a structured output (the ``final_result`` tool)."""
    turn: int
    """How many model requests this node made before this one."""

    def state(self) -> dict[str, Any]:
        """The run state from the default prompt (``{"input": …, "outputs": …}``)."""
        try:
            data = json.loads(self.prompt)
        except ValueError:
            return {}
        return cast(dict[str, Any], data) if isinstance(data, dict) else {}

    def results_of(self, tool: str) -> list[Any]:
        return [result for name, result in self.tool_results if name == tool]


Reply = ModelResponse | str | dict[str, Any]
Handler = Callable[[Turn], Reply]


def call(tool: str, **args: Any) -> ModelResponse:
    """A response asking for one tool call."""
    return ModelResponse(parts=[ToolCallPart(tool, args)])


def output(**fields: Any) -> ModelResponse:
    """A response giving the node's structured output."""
    return ModelResponse(parts=[ToolCallPart(OUTPUT_TOOL, fields)])


class ScriptedModel(FunctionModel):
    """A deterministic model driven by per-node handlers.

    ``ScriptedModel({"researcher": handle_researcher, "*": fallback})``. A handler returns a
    `ModelResponse` (see `call` and `output`), a ``str`` (text), or a ``dict`` (structured
    output). `latency` adds a pause to each request (to look like a provider); `call_log`
    appends one JSON line per request to a file — what tests count to prove nothing re-ran.
    """

    def __init__(
        self,
        script: Mapping[str, Handler] | Handler,
        *,
        model_name: str = "scripted",
        latency: float = 0.0,
        call_log: str | None = None,
    ) -> None:
        self._handlers: dict[str, Handler] | None = None
        self._only: Handler | None = None
        if callable(script):
            self._only = script
        else:
            self._handlers = dict(script)
        self.latency = latency
        self.call_log = call_log
        super().__init__(self._respond, model_name=model_name)

    async def _respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = _turn(messages, info)
        if self.call_log:  # logged when sent: a call cut short by a crash still counts
            line = json.dumps({"node": turn.node, "turn": turn.turn, "pid": os.getpid(),
                               "time": time.time()})
            # A one-line append to a local file (tests and the demo only): not worth a thread.
            with open(self.call_log, "a", encoding="utf-8") as log:  # noqa: ASYNC230
                log.write(line + "\n")
        if self.latency:
            await asyncio.sleep(self.latency)
        handler = self._handler(turn.node)
        reply = handler(turn)
        if isinstance(reply, ModelResponse):
            return reply
        if isinstance(reply, str):
            return ModelResponse(parts=[TextPart(reply)])
        return output(**reply)

    def _handler(self, node: str) -> Handler:
        if self._handlers is None:
            assert self._only is not None
            return self._only
        handler = self._handlers.get(node) or self._handlers.get("*")
        if handler is None:
            raise UserError(
                f"ScriptedModel has no handler for node {node!r} (script covers: "
                f"{', '.join(self._handlers)}); add one or a '*' fallback"
            )
        return handler


def _turn(messages: list[ModelMessage], info: AgentInfo) -> Turn:
    node, prompt, turns = "", "", 0
    results: list[tuple[str, Any]] = []
    errors: list[str] = []
    for message in messages:
        if isinstance(message, ModelRequest):
            if not node and message.metadata:
                node = str(message.metadata.get("tether_node", ""))
            for part in message.parts:
                if isinstance(part, UserPromptPart):
                    if not prompt and isinstance(part.content, str):
                        prompt = part.content
                    elif isinstance(part.content, str):
                        errors.append(part.content)
                elif isinstance(part, ToolReturnPart):
                    if part.outcome == "success":
                        results.append((part.tool_name, part.content))
                    else:
                        errors.append(str(part.content))
        else:
            turns += 1
    return Turn(
        node=node,
        instructions=info.instructions or "",
        prompt=prompt,
        tool_results=results,
        errors=errors,
        tools=[t.name for t in info.function_tools],
        structured=bool(info.output_tools),
        turn=turns,
    )
