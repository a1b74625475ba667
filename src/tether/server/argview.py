"""How a tool call's arguments read to a reviewer: text as text, an email as an email, an edit as
a diff.

A reviewer judges *what the agent wants to do*; a JSON line with ``\\n\\n`` escapes in a
sideways-scrolling box hides exactly that. These helpers turn arguments into parts the approval
template lays out (no HTML here: the template escapes everything it shows).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

EMAIL_HEADERS = ("from", "to", "cc", "bcc", "reply_to", "subject")
"""Argument names shown as an email's header lines, in this order."""
EMAIL_BODIES = ("body", "text", "content", "message", "html")
"""Argument names that hold an email's body (the first present one is the body)."""


@dataclass(frozen=True)
class ArgPart:
    """One argument as shown on the page."""

    name: str
    """The argument's name."""
    kind: str
    """``text`` (a string, shown with its line breaks, wrapped), ``value`` (a number, boolean
    or null, inline) or ``json`` (a list or object, pretty-printed)."""
    text: str
    """What to show."""


@dataclass(frozen=True)
class ArgsView:
    """A tool call's arguments laid out for a reviewer."""

    email: bool
    """Whether they read as an email (recipients and a body)."""
    headers: list[ArgPart] = field(default_factory=list[ArgPart])
    """For an email: From, To, Cc, Bcc, Reply-To, Subject that are present."""
    body: ArgPart | None = None
    """For an email: its body."""
    parts: list[ArgPart] = field(default_factory=list[ArgPart])
    """Every other argument, in the order the agent gave them."""


def part(name: str, value: Any) -> ArgPart:
    """`value` as text (strings verbatim), inline (scalars) or pretty JSON (the rest)."""
    if isinstance(value, str):
        return ArgPart(name, "text", value)
    if value is None or isinstance(value, bool | int | float):
        return ArgPart(name, "value", json.dumps(value))
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        items = [str(item) for item in value]  # pyright: ignore[reportUnknownVariableType]
        if all("\n" not in item for item in items):
            return ArgPart(name, "value", ", ".join(items))
    return ArgPart(name, "json", json.dumps(value, indent=2, ensure_ascii=False, default=str))


def view(args: Mapping[str, Any] | None) -> ArgsView:
    """Lay `args` out: as an email when they have recipients (``to``) and a text body."""
    args = dict(args or {})
    lowered = {name.lower(): name for name in args}
    body_name = next((lowered[b] for b in EMAIL_BODIES if b in lowered), None)
    if "to" in lowered and body_name is not None and isinstance(args[body_name], str):
        headers = [part(lowered[h], args[lowered[h]]) for h in EMAIL_HEADERS if h in lowered]
        shown = {p.name for p in headers} | {body_name}
        rest = [part(name, value) for name, value in args.items() if name not in shown]
        return ArgsView(True, headers, part(body_name, args[body_name]), rest)
    return ArgsView(False, parts=[part(name, value) for name, value in args.items()])


@dataclass(frozen=True)
class DiffLine:
    """One line of an edit's diff."""

    op: str
    """``same``, ``del`` (only in the proposal) or ``add`` (only in what was approved)."""
    text: str


def diff(before: Any, after: Any) -> list[DiffLine]:
    """A line diff of one argument's proposed and approved values (non-strings as JSON)."""

    def lines(value: Any) -> list[str]:
        text = value if isinstance(value, str) else json.dumps(
            value, indent=2, ensure_ascii=False, default=str
        )
        return text.splitlines() or [""]

    old, new = lines(before), lines(after)
    out: list[DiffLine] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            out.extend(DiffLine("same", line) for line in old[i1:i2])
            continue
        out.extend(DiffLine("del", line) for line in old[i1:i2])
        out.extend(DiffLine("add", line) for line in new[j1:j2])
    return out
