"""JSON values in and out of the journal: pydantic models, dataclasses and plain JSON."""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

import pydantic
import pydantic_core

from tether.errors import UserError


class JsonObject(dict[str, Any]):
    """A JSON object its producer built of JSON values only (a serializer's output): journaled
    as it is, without the copy `to_jsonable` makes of any other value."""

    __slots__ = ()


def to_jsonable(value: Any, *, what: str) -> Any:
    """Convert to plain JSON values; `what` names the value in the error."""
    if value is None or type(value) in (str, int, float, bool) or isinstance(value, JsonObject):
        return value
    try:
        return pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError as exc:
        raise UserError(
            f"{what} is not JSON-serialisable ({type(value).__name__}): {exc}. Return JSON "
            "values, dataclasses or pydantic models."
        ) from exc


class Decoder:
    """Rebuilds a journaled JSON value as the annotated type (identity when unannotated)."""

    def __init__(self, annotation: Any) -> None:
        plain = annotation in (inspect.Parameter.empty, Any, None, type(None), object)
        self._adapter = None if plain else _adapter(annotation)

    def __call__(self, value: Any) -> Any:
        if self._adapter is None or value is None:
            return value
        return self._adapter.validate_python(value)


@lru_cache(maxsize=512)
def _adapter(annotation: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(annotation)
