"""Workflow and step definitions: what `@app.workflow` and `@app.step` register."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast, get_type_hints

import pydantic

from tether.engine.budget import Budget
from tether.engine.retry import Retry
from tether.engine.serde import Decoder
from tether.errors import UserError


@dataclass(eq=False)
class StepDef:
    """A function whose calls inside a workflow are journaled steps."""

    name: str
    fn: Callable[..., Any]
    retry: Retry | None = None
    timeout: float | None = None
    is_async: bool = True
    decode: Decoder = field(default_factory=lambda: Decoder(None))


@dataclass(eq=False)
class WorkflowDef:
    """A registered workflow: an async function taking a Context and JSON-object keyword args."""

    name: str
    version: str
    fn: Callable[..., Any]
    budget: Budget | None = None
    input_model: type[pydantic.BaseModel] | None = None

    def validate_input(self, data: Any) -> dict[str, Any]:
        """Check `data` against the workflow's signature; returns the keyword arguments."""
        if data is None:
            data = {}
        if not isinstance(data, dict):  # callers pass untyped JSON
            raise UserError(
                f"workflow {self.name!r} takes a JSON object of keyword arguments, "
                f"got {type(data).__name__}"
            )
        fields = cast(dict[str, Any], data)
        if self.input_model is None:
            return dict(fields)
        try:
            parsed = self.input_model.model_validate(fields)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}"
                for err in exc.errors()
            )
            raise UserError(f"invalid input for workflow {self.name!r}: {problems}") from None
        return {name: getattr(parsed, name) for name in type(parsed).model_fields}

    def canonical_input(self, data: Any) -> dict[str, Any]:
        """The input as it will be stored: validated, then back to JSON values."""
        kwargs = self.validate_input(data)
        if self.input_model is None:
            return kwargs
        return self.input_model(**kwargs).model_dump(mode="json")


def make_workflow(
    fn: Callable[..., Any], *, name: str | None, version: str, budget: Budget | None
) -> WorkflowDef:
    if not inspect.iscoroutinefunction(fn):
        raise UserError(
            f"workflow {fn.__qualname__} must be an `async def` taking a tether.Context first"
        )
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        raise UserError(f"workflow {fn.__qualname__} must take a tether.Context as first argument")
    return WorkflowDef(
        name=name or fn.__name__,
        version=str(version),
        fn=fn,
        budget=budget,
        input_model=_input_model(fn, params[1:]),
    )


def _input_model(
    fn: Callable[..., Any], params: list[inspect.Parameter]
) -> type[pydantic.BaseModel] | None:
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    try:
        hints = get_type_hints(fn)
    except Exception:
        hints = {}
    fields: dict[str, Any] = {}
    for p in params:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            raise UserError(
                f"workflow {fn.__qualname__}: parameter {p.name!r} must be passable by keyword"
            )
        annotation = hints.get(p.name, Any)
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (annotation, default)
    return pydantic.create_model(
        f"{fn.__name__}_input",
        __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )


def make_step(
    fn: Callable[..., Any], *, name: str | None, retry: Retry | None, timeout: float | None
) -> StepDef:
    try:
        returns = get_type_hints(fn).get("return", inspect.Parameter.empty)
    except Exception as exc:
        # Without the type, a replay would hand back plain JSON where the first run returned
        # a model: say so rather than let the two executions differ silently.
        warnings.warn(
            f"step {fn.__qualname__}: cannot resolve its return annotation ({exc}); replayed "
            "results will be plain JSON. Define the returned types at module level.",
            stacklevel=3,
        )
        returns = inspect.Parameter.empty
    return StepDef(
        name=name or fn.__name__,
        fn=fn,
        retry=retry,
        timeout=timeout,
        is_async=inspect.iscoroutinefunction(fn),
        decode=Decoder(returns),
    )


def version_key(version: str) -> tuple[int, tuple[int, ...], str]:
    """Numeric versions ("2" > "10" is wrong) order numerically, after any non-numeric one."""
    try:
        return (1, tuple(int(part) for part in version.split(".")), "")
    except ValueError:
        return (0, (), version)
