"""The trust policy: what happens to an action of each risk category.

A tool's ``risk`` is its category. The policy maps each category to a ring — ``auto`` (act
alone, only when every self-check passed), ``review`` (a named human decides) or ``deny`` — with
per-agent overrides. `Evidence` lets a ``review`` category widen to ``auto`` once its reviews
show the agent gets it right; a rejection or a failure after that narrows it back. The policy
itself never changes: ring changes are recorded in the store with the evidence behind them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from tether.errors import UserError

Ring = Literal["auto", "review", "deny"]
RINGS: tuple[Ring, ...] = ("auto", "review", "deny")
OnExpire = Literal["reject", "fail"]
OnReject = Literal["revise", "fail"]


@dataclass(frozen=True, slots=True)
class Evidence:
    """When a ``review`` category has earned ``auto`` for an agent.

    Counted over the reviews since the category was last narrowed (or ever): at least
    `min_reviews` decided reviews, of which at least `min_unedited_rate` were approved without
    edits. ``Policy(promote=Evidence(min_reviews=50, min_unedited_rate=0.96))``.
    """

    min_reviews: int = 20
    """Decided reviews (approved, rejected or expired) needed before promotion."""
    min_unedited_rate: float = 0.95
    """Share of those reviews approved exactly as the agent proposed."""

    def __post_init__(self) -> None:
        if self.min_reviews < 1:
            raise UserError(f"Evidence(min_reviews={self.min_reviews}) must be at least 1")
        if not 0.0 < self.min_unedited_rate <= 1.0:
            raise UserError(
                f"Evidence(min_unedited_rate={self.min_unedited_rate}) must be in (0, 1]"
            )


@dataclass
class Policy:
    """Maps risk categories to ``auto``, ``review`` or ``deny``; unknown categories get
    `default`. ``Policy({"read": "auto", "send": "review"}, default="review")``."""

    rules: Mapping[str, Ring] = field(default_factory=dict[str, Ring])
    default: Ring = "review"
    agents: Mapping[str, Mapping[str, Ring]] = field(
        default_factory=dict[str, Mapping[str, Ring]]
    )
    """Per-agent overrides: ``{"drafter": {"send": "deny"}}`` wins over `rules` for that agent."""
    promote: Evidence | None = None
    """Widen a ``review`` category to ``auto`` once its evidence is good enough (per agent)."""
    reviewers: Mapping[str, Sequence[str]] = field(default_factory=dict[str, Sequence[str]])
    """Categories restricted to named reviewers: ``{"send": ["alice", "bob"]}``. Other
    categories may be decided by anyone who gives a name (never the run's starter)."""
    expire_after: timedelta | float | Mapping[str, timedelta | float] | None = None
    """A review not decided within this time (seconds or timedelta) expires; or per category,
    ``{"send": timedelta(hours=4)}`` (categories not listed never expire)."""
    on_expire: OnExpire = "reject"
    """``reject``: the agent is told no one approved in time; ``fail``: the run fails."""
    on_reject: OnReject = "revise"
    """``revise``: the reviewer's reason goes back to the agent as the tool's result;
    ``fail``: a rejection ends the run."""
    max_rejections: int = 3
    """With ``revise``: rejections per agent per run before the run fails instead."""

    def __post_init__(self) -> None:
        for category, ring in {**self.rules, "<default>": self.default}.items():
            _check_ring(ring, f"category {category!r}")
        for agent, overrides in self.agents.items():
            for category, ring in overrides.items():
                _check_ring(ring, f"agent {agent!r}, category {category!r}")
        if self.on_expire not in ("reject", "fail"):
            raise UserError(f"Policy(on_expire={self.on_expire!r}): use 'reject' or 'fail'")
        if self.on_reject not in ("revise", "fail"):
            raise UserError(f"Policy(on_reject={self.on_reject!r}): use 'revise' or 'fail'")
        if self.max_rejections < 1:
            raise UserError(f"Policy(max_rejections={self.max_rejections}) must be at least 1")
        limits = self.expire_after if isinstance(self.expire_after, Mapping) else {
            "<all>": self.expire_after}
        for category, limit in limits.items():
            seconds = _seconds(limit)
            if seconds is not None and seconds <= 0:
                raise UserError(
                    f"Policy(expire_after=…): {category!r} expires after {limit}; "
                    "it must be positive"
                )
        for category, names in self.reviewers.items():
            # Config often comes from YAML/JSON: a bare string would be read letter by letter.
            if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise UserError(
                    f"Policy(reviewers={{{category!r}: …}}) must be a list of reviewer names"
                )
        self.rules = dict(self.rules)
        self.agents = {agent: dict(overrides) for agent, overrides in self.agents.items()}
        self.reviewers = {category: list(names) for category, names in self.reviewers.items()}

    def ring(self, category: str, *, agent: str | None = None) -> Ring:
        """The ring the policy gives a category (an agent's override first). Promotions by
        evidence are applied on top of this by the trust gate, not here."""
        if agent is not None:
            override = self.agents.get(agent, {}).get(category)
            if override is not None:
                return override
        return self.rules.get(category, self.default)

    def reviewers_for(self, category: str) -> list[str] | None:
        """Who may decide this category; ``None``: any named reviewer."""
        names = self.reviewers.get(category)
        return list(names) if names is not None else None

    def expire_seconds(self, category: str) -> float | None:
        """Seconds a review of this category may stay undecided; ``None``: no expiry."""
        if isinstance(self.expire_after, Mapping):
            return _seconds(self.expire_after.get(category))
        return _seconds(self.expire_after)


def _seconds(value: timedelta | float | None) -> float | None:
    return value.total_seconds() if isinstance(value, timedelta) else value


def _check_ring(ring: object, where: str) -> None:
    if ring not in RINGS:
        raise UserError(f"Policy: {where} maps to {ring!r}; use auto, review or deny")
