"""Structured output and self-checks: the ``final_result`` tool's schema, validation, checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

import pydantic

from tether.agents.gate import CheckResult
from tether.agents.state import RunState

OUTPUT_TOOL = "final_result"
"""The tool through which a model returns a structured output."""

Check = Callable[[Any, RunState], "bool | str | CheckResult | None"]
"""A self-check over a node's output: ``True``/``None`` passes; ``False`` or a reason fails."""


class OutputSchema:
    """Validates structured output; non-object types travel wrapped as ``{"response": …}``."""

    def __init__(self, output_type: Any) -> None:
        self.adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(output_type)
        schema = self.adapter.json_schema()
        self.wrapped = schema.get("type") != "object"
        if self.wrapped:
            schema = {"type": "object", "properties": {"response": schema},
                      "required": ["response"]}
        schema.pop("title", None)
        self.schema = schema

    def validate(self, args: dict[str, Any]) -> Any:
        if self.wrapped:
            args = args.get("response", args)  # type: ignore[assignment]
        return self.adapter.validate_python(args)

    def from_text(self, text: str) -> Any:
        """A valid output from text that is the JSON of one, else `MISSING`."""
        if text.startswith("```"):
            text = text.strip("`").removeprefix("json").strip()
        if not text.startswith(("{", "[")):
            return MISSING
        try:
            data: Any = json.loads(text)
            args = cast(dict[str, Any], data) if isinstance(data, dict) else {"response": data}
            return self.validate(args)
        except (ValueError, pydantic.ValidationError):
            return MISSING

    def dump(self, value: Any) -> Any:
        return self.adapter.dump_python(value, mode="json")


class Missing:
    """The type of `MISSING`."""


MISSING: Any = Missing()
"""No output yet (``None`` is a valid output, so it cannot mean that)."""


def run_check(check: Check, value: Any, state: RunState, node: str) -> CheckResult:
    """Run one self-check; a check that raises fails (it never passes silently)."""
    name = getattr(check, "__name__", type(check).__name__)
    try:
        outcome = check(value, state)
    except Exception as exc:
        return CheckResult(name, False, f"the check raised {type(exc).__name__}: {exc}")
    if isinstance(outcome, CheckResult):
        return outcome
    if outcome is None or outcome is True:
        return CheckResult(name, True)
    if outcome is False:
        return CheckResult(name, False, f"{name} did not hold for node {node!r}")
    return CheckResult(name, False, str(outcome))


def validation_text(exc: pydantic.ValidationError) -> str:
    """Validation errors as one line the model (and a person) can act on."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()
    )
