"""Helpers every benchmark script shares: timing, medians, fresh files, result tables.

Nothing here knows about tether or a peer. A benchmark measures a number several times, keeps
the median (these machines are noisy), and records a `Check` — what was measured, the target
and whether it was met — so the script can end with one summary table.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent


def median(values: Sequence[float]) -> float:
    """The median of the repetitions (the number a benchmark reports)."""
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """``min-max`` of the repetitions, to show how noisy a median is."""
    return f"{fmt(min(values))}-{fmt(max(values))}"


def fmt(value: float) -> str:
    """A number as a human reads it in a table: thousands separated, few digits."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def rate(count: int, seconds: float) -> float:
    """Operations per second; infinite when nothing measurable elapsed."""
    return count / seconds if seconds > 0 else float("inf")


@contextlib.contextmanager
def fresh_dir(prefix: str = "bench-") -> Iterator[Path]:
    """A new temporary directory for one measurement's database files, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def repeat(times: int, measure: Callable[[], float]) -> list[float]:
    """Call `measure` `times` times and return what each call returned."""
    return [measure() for _ in range(times)]


def wait_until(
    condition: Callable[[], bool], *, timeout: float, interval: float = 0.002, what: str = ""
) -> float:
    """Poll `condition` until it holds; returns the `time.time()` at which it was seen true.
    Raises `TimeoutError` naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return time.time()
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark gave up after {timeout}s waiting for {what}")
        time.sleep(interval)


def run_json(args: Sequence[str], *, timeout: float, env: dict[str, str] | None = None) -> Any:
    """Run a helper script with this interpreter and parse the JSON object it prints last.

    Peers run in their own process so their background threads and global state never share
    a CPU or an interpreter with the system measured next.
    """
    completed = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"benchmark helper {' '.join(args)} exited with {completed.returncode}:\n"
            f"{completed.stderr[-3000:]}"
        )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"benchmark helper {' '.join(args)} printed no JSON result")
    return json.loads(lines[-1])


@dataclass(frozen=True)
class Check:
    """One line of the summary: a measured number against its target."""

    measure: str
    target: str
    measured: str
    passed: bool | None
    """``None`` for numbers that are reported without a target."""


@dataclass
class Report:
    """Collects checks and prints them as the final table."""

    title: str
    checks: list[Check]

    def add(self, measure: str, target: str, measured: str, passed: bool | None) -> None:
        self.checks.append(Check(measure, target, measured, passed))

    def print(self) -> None:
        print_table(
            self.title,
            ["measure", "target", "measured", "pass"],
            [
                [c.measure, c.target, c.measured, {True: "yes", False: "NO", None: "-"}[c.passed]]
                for c in self.checks
            ],
        )


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A plain-text table (no dependencies, readable in CI logs and READMEs)."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    sys.stdout.flush()


def section(title: str) -> None:
    """Announce what is being measured (long steps should not look like a hang)."""
    print(f"\n== {title}", flush=True)
