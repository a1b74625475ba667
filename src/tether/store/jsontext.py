"""JSON text as the stores write and read it: compact, from one encoder built once."""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _encoder
from typing import Any

_FALLBACK = json.JSONEncoder(separators=(",", ":"))


def _c_encoder() -> Callable[[Any], str]:
    # `JSONEncoder.encode` builds a C encoder (and a closure) on every call: a fifth of a
    # journaled step's JSON cost. One is built here and kept. It checks no circular references
    # (the values written are plain JSON built by tether or by `to_jsonable`, which refuses
    # cycles), so it holds no state between calls and is safe from any thread.
    make = getattr(_encoder, "c_make_encoder", None)
    if make is None:  # a Python built without the C accelerator
        return _FALLBACK.encode
    chunks = make(
        None,
        _FALLBACK.default,
        _encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        False,
        False,
        True,
    )
    join = "".join

    def encode(value: Any) -> str:
        return join(chunks(value, 0))

    return encode


_encode = _c_encoder()


def dumps(value: Any) -> str | None:
    """`value` as compact JSON text; ``None`` stays ``None`` (SQL NULL)."""
    return None if value is None else _encode(value)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
