"""pydantic-ai toolsets (`FunctionToolset`, `MCPToolset`…) as tools of a `tether.Agent`.

A node lists its toolsets' tools once per execution, as one journaled step
(``{agent}.toolsets``), so a replay offers the model the same tools without connecting to
anything. A toolset is entered (an MCP server started or connected) only when a call must
really run, and left when the node ends. Each call is one journaled step
(``{agent}.tool.{name}``) like a `@tool` function's, after the same checks: the arguments are
validated against the listed JSON schema, the loop guard counts them, the trust gate decides
with the tool's risk category (its metadata ``{"risk": …}``, default ``read``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from pydantic_ai import RunContext
from pydantic_ai.models import Model
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool
from pydantic_ai.usage import RunUsage

from tether.engine.context import Context, current_step
from tether.errors import UserError
from tether.observe import names


@dataclass(frozen=True)
class ToolsetToolInfo:
    """A toolset's tool as the node offers it (journaled with the listing)."""

    name: str
    description: str
    schema: dict[str, Any]
    risk: str
    toolset: int
    """Index of its toolset in the agent's `toolsets`."""

    def definition(self) -> ToolDefinition:
        return ToolDefinition(name=self.name, parameters_json_schema=self.schema,
                              description=self.description)

    def check(self, args: dict[str, Any]) -> None:
        """Raise `jsonschema.ValidationError` when `args` do not match the tool's schema."""
        jsonschema.validate(args, self.schema)


@dataclass
class ToolsetSession:
    """The toolsets of one node execution: listed from the journal, entered only if needed."""

    agent: str
    toolsets: list[AbstractToolset[Any]]
    model: Model
    tools: dict[str, ToolsetToolInfo] = field(default_factory=dict[str, ToolsetToolInfo])
    _live: dict[str, ToolsetTool[Any]] | None = None
    _stack: contextlib.AsyncExitStack | None = None

    async def list(self, ctx: Context) -> dict[str, ToolsetToolInfo]:
        """The tools of every toolset, journaled as one step."""
        if not self.toolsets:
            return {}
        session = self

        async def discover() -> list[dict[str, Any]]:
            live = await session._enter(ctx)
            listed: list[dict[str, Any]] = []
            for name, tool in live.items():
                meta = tool.tool_def.metadata or {}
                risk = meta.get("risk") if isinstance(meta.get("risk"), str) else "read"
                listed.append({"name": name, "description": tool.tool_def.description or name,
                               "schema": tool.tool_def.parameters_json_schema, "risk": risk,
                               "toolset": session._index_of(tool)})
            return listed

        listed = await ctx.run_step(
            f"{self.agent}.toolsets", discover, is_async=True,
            meta={names.NODE: self.agent, names.AGENT_NAME: self.agent},
        )
        self.tools = {t["name"]: ToolsetToolInfo(**t) for t in listed}
        return self.tools

    async def call(self, ctx: Context, name: str, args: dict[str, Any], call_id: str | None) -> Any:
        """The body of the tool's step: enter the toolsets if needed, validate, call."""
        live = await self._enter(ctx)
        tool = live.get(name)
        if tool is None:
            raise UserError(f"run {ctx.run_id}: toolset tool {name!r} of agent {self.agent!r} "
                            "is gone (the server no longer lists it)")
        run_ctx = self._run_context(ctx, name, call_id)
        validated = tool.args_validator.validate_python(args)
        toolset = self.toolsets[self._index_of(tool)]
        return await toolset.call_tool(name, validated, run_ctx, tool)

    async def close(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._live = self._stack, None, None
            await stack.aclose()

    def _index_of(self, tool: ToolsetTool[Any]) -> int:
        for i, toolset in enumerate(self.toolsets):
            if tool.toolset is toolset or _wraps(tool.toolset, toolset):
                return i
        return 0

    async def _enter(self, ctx: Context) -> dict[str, ToolsetTool[Any]]:
        if self._live is not None:
            return self._live
        stack = contextlib.AsyncExitStack()
        live: dict[str, ToolsetTool[Any]] = {}
        try:
            for toolset in self.toolsets:
                await stack.enter_async_context(toolset)
                for name, tool in (await toolset.get_tools(self._run_context(ctx))).items():
                    if name in live:
                        raise UserError(f"agent {self.agent!r}: tool name {name!r} is offered "
                                        "by two toolsets; give one a prefix (toolset.prefixed())")
                    live[name] = tool
        except BaseException:
            await stack.aclose()
            raise
        self._stack, self._live = stack, live
        return live

    def _run_context(self, ctx: Context, tool: str | None = None,
                     call_id: str | None = None) -> RunContext[Any]:
        with contextlib.suppress(UserError):
            step = current_step()
            return RunContext(deps=None, model=self.model, usage=RunUsage(),
                              run_id=f"{ctx.run_id}:{step.seq}", tool_name=tool,
                              tool_call_id=call_id, retry=step.attempt - 1)
        return RunContext(deps=None, model=self.model, usage=RunUsage(), run_id=ctx.run_id,
                          tool_name=tool, tool_call_id=call_id)


def _wraps(outer: Any, inner: AbstractToolset[Any]) -> bool:
    seen = 0
    while outer is not None and seen < 10:
        if outer is inner:
            return True
        outer = getattr(outer, "wrapped", None)
        seen += 1
    return False
