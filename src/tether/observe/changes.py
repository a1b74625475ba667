"""Change detection: did a model, prompt or app change move a node's latency, cost or failures?

For each node, the window's samples are split by fingerprint — prompt hash (``version``),
model, app version — or by time (``window``: first half against second half). Each fingerprint
is compared with the one that came before it:

* latency and cost per call with the Mann-Whitney U test (no normality assumed; latencies are
  skewed), effect size as the ratio of medians and the rank-biserial correlation;
* failure rate with the two-proportion z-test, effect size as the difference of rates and
  Cohen's h.

A change is flagged only when it is both significant (``p < alpha``) and large enough to matter
(``min_effect``), with enough samples on each side — so a big stable workload does not flag
noise, and a tiny one does not flag anything.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tether.observe import names as n
from tether.observe.window import RunJournal, dimension_value, is_model_call, load_window
from tether.store.base import StepRecord

Metric = Literal["latency", "cost_per_call", "failure_rate"]
DEFAULT_DIMENSIONS = ("version", "model", "app_version")


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """``(U of x, two-sided p)`` by the normal approximation with tie and continuity
    corrections (what scipy's ``mannwhitneyu(method="asymptotic")`` gives)."""
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("Mann-Whitney U needs at least one value on each side")
    pooled = sorted([(v, 0) for v in x] + [(v, 1) for v in y], key=lambda p: p[0])
    total = n1 + n2
    rank_sum_x = 0.0
    tie_term = 0.0
    i = 0
    while i < total:
        j = i
        while j + 1 < total and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        average_rank = (i + j) / 2 + 1
        ties = j - i + 1
        tie_term += ties**3 - ties
        rank_sum_x += average_rank * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        i = j + 1
    u = rank_sum_x - n1 * (n1 + 1) / 2
    mean = n1 * n2 / 2
    variance = n1 * n2 / 12 * ((total + 1) - tie_term / (total * (total - 1)))
    if variance <= 0:
        return u, 1.0
    z = max(abs(u - mean) - 0.5, 0.0) / math.sqrt(variance)
    return u, math.erfc(z / math.sqrt(2))


def two_proportion_z(fail1: int, n1: int, fail2: int, n2: int) -> tuple[float, float]:
    """``(z, two-sided p)`` for a difference between two failure rates (pooled variance)."""
    if n1 == 0 or n2 == 0:
        raise ValueError("the two-proportion test needs samples on each side")
    p1, p2 = fail1 / n1, fail2 / n2
    pooled = (fail1 + fail2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (p2 - p1) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


@dataclass(frozen=True, slots=True)
class Change:
    """One comparison of a node's metric between a baseline and a candidate fingerprint."""

    node: str
    metric: Metric
    dimension: str
    """What differs: ``version`` (prompt hash), ``model``, ``app_version`` or ``window``."""
    baseline: str
    candidate: str
    test: str
    """``mann-whitney-u`` or ``two-proportion-z``."""
    p_value: float
    baseline_value: float
    """Median latency / cost per call, or failure rate, of the baseline."""
    candidate_value: float
    effect: float
    """Ratio of medians (candidate / baseline), or difference of failure rates."""
    effect_size: float
    """Rank-biserial correlation (Mann-Whitney) or Cohen's h (proportions)."""
    n_baseline: int
    n_candidate: int
    flagged: bool

    def describe(self) -> str:
        if self.metric == "failure_rate":
            moved = f"{self.baseline_value:.1%} -> {self.candidate_value:.1%}"
        elif self.metric == "latency":
            moved = f"median {self.baseline_value:.3f}s -> {self.candidate_value:.3f}s (x{self.effect:.2f})"
        else:
            moved = f"median ${self.baseline_value:.6f} -> ${self.candidate_value:.6f} (x{self.effect:.2f})"
        return (
            f"{self.node}: {self.metric} {moved} between {self.dimension} {self.baseline} and "
            f"{self.candidate} ({self.test}, p={self.p_value:.2g}, effect size "
            f"{self.effect_size:+.2f}, n={self.n_baseline}/{self.n_candidate})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a difference is worth flagging."""

    alpha: float = 0.01
    """Significance level of each test."""
    min_samples: int = 20
    """Samples needed on each side."""
    min_ratio: float = 0.2
    """Latency/cost: the medians must differ by at least this fraction."""
    min_rate_change: float = 0.05
    """Failure rate: the rates must differ by at least this much (absolute)."""


def _node_of(rec: StepRecord) -> str:
    node = (rec.meta or {}).get(n.NODE)
    return str(node) if node is not None else f"step:{rec.name}"


def _samples(journals: list[RunJournal], since: float, until: float) -> dict[str, list[tuple[RunJournal, StepRecord]]]:
    by_node: dict[str, list[tuple[RunJournal, StepRecord]]] = {}
    for journal in journals:
        for rec in journal.leaf_steps(since, until):
            by_node.setdefault(_node_of(rec), []).append((journal, rec))
    # A node's model calls carry its fingerprints; its tool calls would blur the comparison.
    for node, items in by_node.items():
        calls = [item for item in items if is_model_call(item[1])]
        if calls:
            by_node[node] = calls
    return by_node


def compare(
    node: str,
    dimension: str,
    baseline: tuple[str, list[StepRecord]],
    candidate: tuple[str, list[StepRecord]],
    thresholds: Thresholds = Thresholds(),
) -> list[Change]:
    """Compare latency, cost per call and failure rate between two groups of steps."""
    (base_name, base), (cand_name, cand) = baseline, candidate
    out: list[Change] = []
    common = {"node": node, "dimension": dimension, "baseline": base_name, "candidate": cand_name}

    def durations(recs: list[StepRecord]) -> list[float]:
        return [
            r.finished_at - r.started_at
            for r in recs
            if r.status == "completed" and r.started_at is not None and r.finished_at is not None
        ]

    def costs(recs: list[StepRecord]) -> list[float]:
        return [
            float((r.usage or {}).get("cost_usd") or 0.0)
            for r in recs
            if r.status == "completed" and not (r.usage or {}).get("unpriced_calls")
            and (r.usage or {}).get("llm_calls")
        ]

    for metric, x, y in (
        ("latency", durations(base), durations(cand)),
        ("cost_per_call", costs(base), costs(cand)),
    ):
        if len(x) < thresholds.min_samples or len(y) < thresholds.min_samples:
            continue
        u, p = mann_whitney_u(x, y)
        mx, my = statistics.median(x), statistics.median(y)
        ratio = my / mx if mx > 0 else (math.inf if my > 0 else 1.0)
        rank_biserial = 1 - 2 * u / (len(x) * len(y))  # > 0: candidate tends to be larger
        flagged = p < thresholds.alpha and abs(ratio - 1) >= thresholds.min_ratio
        out.append(Change(
            **common, metric=metric, test="mann-whitney-u", p_value=p,  # type: ignore[arg-type]
            baseline_value=mx, candidate_value=my, effect=ratio, effect_size=rank_biserial,
            n_baseline=len(x), n_candidate=len(y), flagged=flagged,
        ))
    if len(base) >= thresholds.min_samples and len(cand) >= thresholds.min_samples:
        f1 = sum(1 for r in base if r.status == "failed")
        f2 = sum(1 for r in cand if r.status == "failed")
        _, p = two_proportion_z(f1, len(base), f2, len(cand))
        r1, r2 = f1 / len(base), f2 / len(cand)
        cohens_h = 2 * math.asin(math.sqrt(r2)) - 2 * math.asin(math.sqrt(r1))
        flagged = p < thresholds.alpha and abs(r2 - r1) >= thresholds.min_rate_change
        out.append(Change(
            **common, metric="failure_rate", test="two-proportion-z", p_value=p,  # type: ignore[arg-type]
            baseline_value=r1, candidate_value=r2, effect=r2 - r1, effect_size=cohens_h,
            n_baseline=len(base), n_candidate=len(cand), flagged=flagged,
        ))
    return out


def find_changes(
    journals: list[RunJournal],
    since: float,
    until: float,
    *,
    dimensions: Sequence[str] = DEFAULT_DIMENSIONS,
    thresholds: Thresholds = Thresholds(),
    include_unflagged: bool = False,
) -> list[Change]:
    """Compare each node's consecutive fingerprints (in order of first appearance) along each
    dimension; ``window`` compares the first half of the window with the second."""
    found: list[Change] = []
    for node, items in sorted(_samples(journals, since, until).items()):
        for dimension in dimensions:
            groups: dict[str, list[StepRecord]] = {}
            first_seen: dict[str, float] = {}
            if dimension == "window":
                start = since or min((rec.finished_at or until) for _, rec in items)
                middle = start + (until - start) / 2
                for _, rec in items:
                    key = "first half" if (rec.finished_at or 0.0) < middle else "second half"
                    groups.setdefault(key, []).append(rec)
                    first_seen.setdefault(key, 0.0 if key == "first half" else 1.0)
            else:
                for journal, rec in items:
                    key = dimension_value(dimension, journal, rec)
                    if key is None:
                        continue
                    groups.setdefault(key, []).append(rec)
                    seen = rec.finished_at or 0.0
                    first_seen[key] = min(first_seen.get(key, seen), seen)
            ordered = sorted(groups, key=lambda k: first_seen[k])
            for older, newer in itertools.pairwise(ordered):
                for change in compare(
                    node, dimension, (older, groups[older]), (newer, groups[newer]), thresholds
                ):
                    if change.flagged or include_unflagged:
                        found.append(change)
    return found


async def detect_changes(
    source: Any,
    *,
    since: float | None = None,
    until: float | None = None,
    dimensions: Sequence[str] = DEFAULT_DIMENSIONS,
    thresholds: Thresholds = Thresholds(),
    include_unflagged: bool = False,
) -> list[Change]:
    """Flagged changes in the window (from an App or a Store); see `find_changes`."""
    until = until if until is not None else time.time()
    since = since or 0.0
    journals = await load_window(source, since, until)
    return find_changes(
        journals, since, until, dimensions=dimensions, thresholds=thresholds,
        include_unflagged=include_unflagged,
    )
