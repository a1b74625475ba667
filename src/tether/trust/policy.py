"""The trust policy: what happens to an action of each risk category."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from tether.errors import UserError

Ring = Literal["auto", "review", "deny"]
RINGS: tuple[Ring, ...] = ("auto", "review", "deny")


@dataclass
class Policy:
    """Maps risk categories to ``auto``, ``review`` or ``deny``; unknown categories get
    `default`. ``Policy({"read": "auto", "send": "review"}, default="review")``."""

    rules: Mapping[str, Ring] = field(default_factory=dict[str, Ring])
    default: Ring = "review"

    def __post_init__(self) -> None:
        for category, ring in {**self.rules, "<default>": self.default}.items():
            if ring not in RINGS:
                raise UserError(
                    f"Policy: category {category!r} maps to {ring!r}; use auto, review or deny"
                )
        self.rules = dict(self.rules)

    def ring(self, category: str, *, agent: str | None = None) -> Ring:
        """The ring for a category (per-agent overrides come with the trust layer)."""
        return self.rules.get(category, self.default)
