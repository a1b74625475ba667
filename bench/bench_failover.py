"""How fast a run moves to another worker when its worker dies or stalls (real processes).

    python bench/bench_failover.py                 # SQLite, and PostgreSQL if reachable
    python bench/bench_failover.py --quick         # two repetitions: a smoke run
    python bench/bench_failover.py --url postgresql://postgres@127.0.0.1:5432/test

For each store and each way to lose a worker, --reps times: worker A starts the run's one step
(`_failover_app.py`); a standby worker B is already up and idle; A is SIGKILLed (a crash) or
SIGSTOPped (a stalled, "zombie" process); the clock runs from that signal until B starts the
same step. The lease is the default (10 s; ``--lease`` to change it): a SIGKILLed worker's
runs move at once because its liveness lock is released with the process (see "Liveness" in
tether/store/base.py); a SIGSTOPped one keeps its lock, so only its lease expiring moves them.
Medians and p95, with the spread.

The end-to-end tests (tests/e2e/test_worker_recovery.py) check that a takeover happens and what
it leaves in the journal, with generous deadlines; how fast it happens is measured here.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from common import BENCH_DIR, fmt, fresh_dir, median, print_table, spread

import tether

ROOT = BENCH_DIR.parent
LEASE = 10.0


def _env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TETHER_STORE"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(BENCH_DIR)])
    env["FAILOVER_DIR"] = str(workdir)
    env["FAILOVER_LEASE"] = str(LEASE)
    return env


def _start_worker(url: str, workdir: Path, name: str) -> subprocess.Popen[bytes]:
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether", "worker", "--app", "_failover_app:app",
         "--store", url, "--id", name],
        cwd=BENCH_DIR, env=_env(workdir), stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()
    return proc


def _poll(check: Callable[[], object], what: str, timeout: float = 60.0, step: float = 0.002) -> float:
    """Poll `check()` until true; returns the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)
    return time.monotonic()


def takeover_seconds(url: str, workdir: Path, how: signal.Signals) -> float:
    """One measurement: seconds from the signal to A until B starts the run's step."""
    client = tether.App(url)
    a = _start_worker(url, workdir, "a")
    b: subprocess.Popen[bytes] | None = None
    try:
        run = client.start("failover", {}).id
        _poll((workdir / f"{run}.{a.pid}").exists, "worker A to start the step")
        b = _start_worker(url, workdir, "b")
        _poll(lambda: "started" in (workdir / "b.log").read_text(errors="replace"),
              "worker B to be up")
        time.sleep(min(LEASE, 1.0))  # B is idle and polling; A holds an unexpired lease
        signalled = time.monotonic()
        os.kill(a.pid, how)
        resumed = _poll((workdir / f"{run}.{b.pid}").exists, "worker B to take the step over")
        return resumed - signalled
    finally:
        (workdir / "gate").touch()
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
                proc.wait()
        client.close()


@contextmanager
def sqlite_store() -> Iterator[tuple[str, Path]]:
    with fresh_dir("bench-failover-") as workdir:
        yield f"sqlite:///{workdir / 'tether.db'}", workdir


@contextmanager
def postgres_store(base: str) -> Iterator[tuple[str, Path]]:
    import psycopg

    schema = f"bench_failover_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    parts = urlsplit(base)
    url = urlunsplit(parts._replace(
        query=urlencode({"options": f"-csearch_path={schema}"}, quote_via=quote)))
    try:
        with fresh_dir("bench-failover-") as workdir:
            yield url, workdir
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def postgres_reachable(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception:
        return False
    return True


def main() -> None:
    global LEASE
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="two repetitions")
    parser.add_argument("--lease", type=float, default=LEASE, help="lease seconds (default 10)")
    parser.add_argument("--kill-only", action="store_true", help="SIGKILL only (no SIGSTOP)")
    parser.add_argument("--url", default=os.environ.get(
        "TETHER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"))
    options = parser.parse_args()
    reps = 2 if options.quick else options.reps
    print(f"load average at start: {os.getloadavg()[0]:.1f}; lease {LEASE}s; {reps} reps")
    stores = [("SQLite", sqlite_store)]
    if postgres_reachable(options.url):
        stores.append(("PostgreSQL", lambda: postgres_store(options.url)))
    else:
        print(f"no PostgreSQL at {options.url}: SQLite only")
    rows: list[list[str]] = []
    for label, store in stores:
        for how in (signal.SIGKILL,) if options.kill_only else (signal.SIGKILL, signal.SIGSTOP):
            times: list[float] = []
            for _ in range(reps):
                with store() as (url, workdir):
                    times.append(takeover_seconds(url, workdir, how))
            p95 = sorted(times)[max(0, -(-len(times) * 95 // 100) - 1)]
            rows.append([label, how.name, fmt(median(times)), fmt(p95), spread(times)])
    print_table(
        "seconds from losing worker A to worker B starting the run's step",
        ["store", "worker A got", "median s", "p95 s", "spread"],
        rows,
    )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
