"""The stores' JSON text: the same text `json.dumps` writes with compact separators."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tether.store.jsontext import dumps, loads

VALUES: list[Any] = [
    0, -3, 2**70, 1.5, 1e-300, float("inf"), float("nan"), True, False, "", "plain",
    'quote " and \\ back', "é ☃ \U0001f600", [], {}, [1, [2, [3, {"a": None}]]],
    {"b": 1, "a": 2}, {"nested": {"list": [1.0, "x", None, True]}}, (1, 2), {1: "int key"},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_dumps_writes_what_json_dumps_writes(value: Any) -> None:
    assert dumps(value) == json.dumps(value, separators=(",", ":"))


def test_none_stays_null_and_round_trips() -> None:
    assert dumps(None) is None and loads(None) is None
    assert loads(dumps({"k": [1, "é"]})) == {"k": [1, "é"]}


def test_a_value_json_cannot_write_is_refused_and_the_next_write_is_unaffected() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"when": object()})
    shared = [1]
    assert dumps({"a": shared, "b": shared}) == '{"a":[1],"b":[1]}'
