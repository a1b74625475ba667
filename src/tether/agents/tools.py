"""Tools an agent may call: `@tool(risk=…)`, their JSON schema, and `ToolContext`.

A tool is a plain function (``async def`` or ``def``). Its parameters become a JSON schema the
model sees and a pydantic model that validates the model's arguments; a first parameter
annotated `ToolContext` is filled in by tether and hidden from the model. Every call runs as
one journaled step, so `ToolContext.idempotency_key` is stable across retries and takeovers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_type_hints, overload

import pydantic

from tether.errors import UserError


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a running tool may know about its call."""

    idempotency_key: str
    """The step's key (run id + sequence number): hand it to the outside system so a retried or
    recovered call has its effect once."""
    run_id: str
    labels: dict[str, str]
    agent: str
    """The agent (pipeline node) that called the tool."""
    attempt: int = 1
    call_id: str | None = None
    """The model's id for this tool call."""


@dataclass(eq=False)
class Tool:
    """A function an agent may call, with its risk category and argument schema."""

    fn: Callable[..., Any]
    name: str
    risk: str
    description: str
    args_model: type[pydantic.BaseModel]
    takes_context: bool
    is_async: bool
    retries: int = 0
    """Extra attempts when the tool raises (transient faults of the outside system)."""
    timeout: float | None = None
    schema: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        self.schema = schema

    def validate(self, args: dict[str, Any]) -> dict[str, Any]:
        """The model's arguments, validated and converted; raises `pydantic.ValidationError`."""
        parsed = self.args_model.model_validate(args)
        return {name: getattr(parsed, name) for name in type(parsed).model_fields}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    risk: str = "read",
    description: str | None = None,
    retries: int = 0,
    timeout: float | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    risk: str = "read",
    description: str | None = None,
    retries: int = 0,
    timeout: float | None = None,
) -> Any:
    """Make a function a tool. ``@tool`` or ``@tool(risk="send")``.

    `risk` is the category the trust policy decides on (``read``, ``write``, ``send``…).
    The description the model sees is the docstring's first paragraph unless given.
    """

    def make(fn: Callable[..., Any]) -> Tool:
        return _make_tool(fn, name=name, risk=risk, description=description,
                          retries=retries, timeout=timeout)

    return make(fn) if fn is not None else make


def _make_tool(
    fn: Callable[..., Any],
    *,
    name: str | None,
    risk: str,
    description: str | None,
    retries: int,
    timeout: float | None,
) -> Tool:
    if not callable(fn):
        raise UserError(f"@tool must decorate a function, got {fn!r}")
    if not risk:
        raise UserError(f"tool {fn.__name__}: risk must be a category name like 'read' or 'send'")
    try:
        hints = get_type_hints(fn)
    except Exception:
        hints = {}
    params = list(inspect.signature(fn).parameters.values())
    takes_context = bool(params) and (
        hints.get(params[0].name) is ToolContext or params[0].annotation in ("ToolContext", ToolContext)
    )
    if takes_context:
        params = params[1:]
    fields: dict[str, Any] = {}
    for p in params:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise UserError(
                f"tool {fn.__name__}: *{p.name} cannot be described to a model; "
                "declare each argument by name"
            )
        annotation = hints.get(p.name, Any)
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (annotation, default)
    args_model = pydantic.create_model(
        f"{fn.__name__}_args",
        __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )
    doc = inspect.getdoc(fn) or ""
    return Tool(
        fn=fn,
        name=name or fn.__name__,
        risk=risk,
        description=description or doc.split("\n\n")[0].strip() or fn.__name__,
        args_model=args_model,
        takes_context=takes_context,
        is_async=inspect.iscoroutinefunction(fn),
        retries=retries,
        timeout=timeout,
    )


def as_tool(obj: Tool | Callable[..., Any]) -> Tool:
    """A `Tool` for `obj` (plain functions become ``read`` tools)."""
    return obj if isinstance(obj, Tool) else _make_tool(
        obj, name=None, risk="read", description=None, retries=0, timeout=None
    )
