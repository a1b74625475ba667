"""Binding an approval to exact arguments: the SHA-256 of their canonical JSON."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: equal argument dicts give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def args_digest(args: dict[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of a tool call's arguments."""
    return "sha256:" + hashlib.sha256(canonical_json(args).encode("utf-8")).hexdigest()
