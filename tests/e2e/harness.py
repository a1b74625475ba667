"""Real `tether` processes for end-to-end tests, and the ledger that counts step executions.

Workers run as ``[sys.executable, "-m", "tether", "worker", ...]`` with this tree on
PYTHONPATH, exactly as a user would start them. Their logs go to files (a pipe nobody reads
could fill up and stall a worker), and are printed when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import tether

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.e2e.workflows_fixture:app"
POISON_APP = "tests.e2e.workflows_fixture:poison_app"

T = TypeVar("T")


def process_env(ledger: Path | None = None, src: Path | None = None) -> dict[str, str]:
    """The environment of a tether process: this tree's sources, or `src` (another version's
    ``src`` folder, for the rolling-upgrade tests) — then the caller's PYTHONPATH does not win."""
    env = dict(os.environ)
    paths = [str(src or ROOT / "src"), str(ROOT)]
    if env.get("PYTHONPATH") and src is None:
        # First: a caller's own sources win (scripts/mutate.py points it at a mutated copy,
        # which the processes started here must run too).
        paths.insert(0, env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.pop("TETHER_STORE", None)
    if ledger is not None:
        env["TETHER_E2E_LEDGER"] = str(ledger)
    return env


def tether_cli(
    *args: str, store: str, timeout: float = 30.0, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run one `tether` command in its own process (``store=""``: no --store option)."""
    return subprocess.run(
        [sys.executable, "-m", "tether", *args, *(["--store", store] if store else [])],
        cwd=cwd,
        env=process_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_until(predicate: Callable[[], T], *, timeout: float, what: str) -> T:
    """Poll `predicate` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


class Workers:
    """The worker processes of one test; all are stopped (SIGKILL) when the test ends."""

    def __init__(self, store: str, ledger: Path, logs: Path) -> None:
        self.store = store
        self.ledger = ledger
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.killed: set[int] = set()
        """Pids of workers this test SIGKILLed (or that were interrupted mid-step)."""
        self._count = 0

    def start(
        self,
        name: str | None = None,
        *,
        app: str = APP,
        args: Iterable[str] = (),
        cwd: Path = ROOT,
        store_option: bool = True,
        src: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        self._count += 1
        name = name or f"w{self._count}"
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "tether", "worker", "--app", app, "--id", name,
             *(["--store", self.store] if store_option else []), *args],
            cwd=cwd,
            env=process_env(self.ledger, src),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        self.killed.add(proc.pid)

    def alive(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is None]

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    def dump_logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)}" for name in self.procs)


@dataclass(frozen=True)
class Execution:
    key: str
    step: str
    pid: int
    state: str
    """``fresh``, ``unchecked`` (plain ``def`` steps) or ``JOURNALED`` (ran although its
    result was already journaled: a bug)."""


def read_ledger(path: Path) -> dict[str, list[Execution]]:
    """Step executions by idempotency key (``run:seq``), in the order they started."""
    by_key: dict[str, list[Execution]] = defaultdict(list)
    if not path.exists():
        return by_key
    for line in path.read_text().splitlines():
        key, step, pid, state = line.split()
        by_key[key].append(Execution(key, step, int(pid), state))
    return by_key


def check_exactly_once(
    info: tether.RunInfo, ledger: dict[str, list[Execution]], interrupted: set[int]
) -> int:
    """Assert every journaled step of the run ran exactly once, except executions cut short
    by a killed (or interrupted) worker before their result was journaled.

    The journaled output names the pid whose execution was kept. That execution must be the
    last one of its key: an execution after it would be a journaled step run again. Every
    earlier execution must come from a worker in `interrupted`. Returns how many executions
    were re-runs.
    """
    reruns = 0
    for step in info.steps:
        if step.kind != "step" or step.status != "completed":
            continue
        key = f"{info.id}:{step.seq}"
        runs = ledger.get(key, [])
        assert runs, f"step {key} ({step.name}) is journaled but the ledger has no execution"
        assert all(r.state != "JOURNALED" for r in runs), (
            f"step {key} ({step.name}) was executed again after its result was journaled: "
            f"{runs}"
        )
        kept = step.output.get("pid") if isinstance(step.output, dict) else None
        assert kept is not None, f"step {key} output carries no pid: {step.output!r}"
        assert runs[-1].pid == kept, (
            f"step {key} ({step.name}) ran again after its result was journaled: "
            f"executions by pids {[r.pid for r in runs]}, journaled result from {kept}"
        )
        for earlier in runs[:-1]:
            assert earlier.pid in interrupted, (
                f"step {key} ({step.name}) ran twice without its first worker being killed: "
                f"executions by pids {[r.pid for r in runs]}, killed {sorted(interrupted)}"
            )
        reruns += len(runs) - 1
    return reruns


def client(store: str) -> tether.App:
    """A client-only App on the test's store (no workflows: it never executes anything)."""
    return tether.App(store)


def run_statuses(app: tether.App, ids: Iterable[str]) -> dict[str, str]:
    return {run_id: app.get_run(run_id).status for run_id in ids}


def describe(app: tether.App, ids: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for run_id in ids:
        info = app.get_run(run_id)
        out[run_id] = (info.status, info.recoveries, info.lease_owner, info.error)
    return out


@contextlib.contextmanager
def worker_pool(tmp_path: Path, store: str) -> Iterator[Workers]:
    """Workers for one test; killed at the end, their logs printed (pytest shows them when
    the test fails)."""
    pool = Workers(store, tmp_path / "ledger.txt", tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()
        print(pool.dump_logs())
