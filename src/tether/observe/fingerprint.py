"""The fingerprint of a model call: what, besides the input, decides what the model does.

The agents layer records it in every model step's meta, so stats can be grouped by prompt
version and change detection can tell a prompt edit, a model swap or a deploy apart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from tether.observe import names as n


def stable_hash(value: Any) -> str:
    """12 hex digits of SHA-256 over canonical JSON (key order and spacing do not matter)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def fingerprint(
    *,
    instructions: str | Sequence[str] | None,
    tool_schemas: Sequence[dict[str, Any]] = (),
    request_model: str,
    response_model: str | None = None,
    app_version: str | None = None,
) -> dict[str, Any]:
    """Meta attributes for one model call: requested and responded model, prompt hash,
    tool-schema hash (order of tools does not matter) and app version."""
    tools = sorted(tool_schemas, key=lambda t: json.dumps(t, sort_keys=True, default=str))
    attrs: dict[str, Any] = {
        n.REQUEST_MODEL: request_model,
        n.PROMPT_HASH: stable_hash(instructions or ""),
        n.TOOLS_HASH: stable_hash(tools),
    }
    if response_model is not None:
        attrs[n.RESPONSE_MODEL] = response_model
    if app_version is not None:
        attrs[n.APP_VERSION] = app_version
    return attrs
