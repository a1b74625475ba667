"""Separate worker processes drain a backlog started from another process, signals arriving
meanwhile — the shape of a real deployment.

    python bench/bench_backlog.py                 # SQLite (2 workers), PostgreSQL (3) if reachable
    python bench/bench_backlog.py --runs 500 --signalled 100 --reps 1    # a smoke run
    python bench/bench_backlog.py --store sqlite  # one store only

Each repetition: a fresh database; `--workers` `tether worker` processes (`_backlog_app.py`)
are started and idle; then this process starts `--runs` runs of five no-op steps and
`--signalled` runs that wait for a signal before their five steps, all at once
(`asyncio.gather(app.start_async(...))`), and sends each signalled run its signal right after
(most arrive while the backlog drains). Measured: steps per second from the first start to the
last run's end (`finished_at` in the store), and run latency — from its start (signalled runs:
from its signal) to its end — median and p99. Medians over the repetitions; the load average is
printed, the machine being shared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from common import BENCH_DIR, fmt, fresh_dir, median, print_table, spread

import tether

ROOT = BENCH_DIR.parent
STEPS = 5
PROFILE: Path | None = None


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TETHER_STORE"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(BENCH_DIR)])
    return env


def _start_worker(url: str, workdir: Path, name: str, concurrency: int) -> subprocess.Popen[bytes]:
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
    profile = ["-m", "cProfile", "-o", str(PROFILE / f"{name}.prof")] if PROFILE else []
    proc = subprocess.Popen(
        [sys.executable, *profile, "-m", "tether", "worker", "--app", "_backlog_app:app",
         "--store", url, "--id", name, "--concurrency", str(concurrency)],
        cwd=BENCH_DIR, env=_env(), stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()
    return proc


def _wait(check: object, what: str, timeout: float = 600.0, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


class Rows:
    """Reads the runs table directly (cheap counting while the workers drain)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            self.conn: object = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        else:
            import psycopg

            self.conn = psycopg.connect(url, autocommit=True)

    def query(self, sql: str) -> list[tuple[object, ...]]:
        return list(self.conn.execute(sql).fetchall())  # type: ignore[attr-defined]

    def finished(self) -> int:
        return int(self.query("SELECT count(*) FROM runs WHERE status = 'succeeded'")[0][0])  # type: ignore[arg-type]

    def times(self) -> list[tuple[str, str, float, float]]:
        rows = self.query("SELECT id, workflow, created_at, finished_at FROM runs")
        return [(str(a), str(b), float(c), float(d)) for a, b, c, d in rows]  # type: ignore[arg-type]

    def close(self) -> None:
        self.conn.close()  # type: ignore[attr-defined]


def in_process(url: str, runs: int, signalled: int, concurrency: int) -> dict[str, float]:
    """The same backlog executed by a worker inside this process (the comparison the issue
    draws: the path without processes)."""
    import importlib

    os.environ["TETHER_STORE"] = url  # the app module's App() opens it
    sys.path.insert(0, str(BENCH_DIR))
    import _backlog_app

    app = importlib.reload(_backlog_app).app

    async def main() -> tuple[float, dict[str, float], float, float]:
        stop = asyncio.Event()
        done = 0
        finished = asyncio.Event()

        async def on_end(run_id: str, status: str) -> None:
            nonlocal done
            if status == "succeeded":
                done += 1
                if done == runs + signalled:
                    finished.set()

        app.executor.listeners.append(on_end)
        await app.store.open()
        cpu = time.process_time()
        worker = asyncio.create_task(app.run_worker_async(concurrency=concurrency, stop=stop))
        await asyncio.sleep(0.5)
        t0 = time.time()
        waiting = await asyncio.gather(*(app.start_async("signalled") for _ in range(signalled)))
        await asyncio.gather(*(app.start_async("five") for _ in range(runs)))
        sent: dict[str, float] = {}

        async def go(run_id: str) -> None:
            await app.signal_async(run_id, "go")
            sent[run_id] = time.time()

        await asyncio.gather(*(go(h.id) for h in waiting))
        started = time.time() - t0
        await finished.wait()
        cpu = time.process_time() - cpu
        stop.set()
        await worker
        return t0, sent, cpu, started

    t0, sent, cpu, started = asyncio.run(main())
    rows = Rows(url)
    times = rows.times()
    rows.close()
    app.close()
    return _summary(times, t0, sent, runs + signalled, cpu, started)


def _summary(
    times: list[tuple[str, str, float, float]], t0: float, sent: dict[str, float], count: int,
    cpu: float, started: float,
) -> dict[str, float]:
    end = max(f for _, _, _, f in times)
    latencies = sorted(f - sent.get(i, c) for i, _, c, f in times)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    elapsed = end - t0
    return {
        "steps_per_s": count * STEPS / elapsed,
        "elapsed": elapsed,
        "start_s": started,
        "p50": statistics.median(latencies),
        "p99": p99,
        "per_cpu": count * STEPS / cpu if cpu else 0.0,
    }


def one_rep(url: str, workdir: Path, workers: int, runs: int, signalled: int, slots: int) -> dict[str, float]:
    """`workers` processes sharing `slots` (0 workers: in this process)."""
    if workers == 0:
        return in_process(url, runs, signalled, slots)
    procs = [_start_worker(url, workdir, f"w{i}", slots // workers) for i in range(workers)]
    client = tether.App(url)
    rows = Rows(url)
    try:
        for i in range(workers):
            _wait(lambda i=i: "started" in (workdir / f"w{i}.log").read_text(errors="replace"), f"worker {i} up")
        time.sleep(0.5)  # all idle, polling
        idle_cpu = sum(_cpu_seconds(p.pid) for p in procs)  # start-up is not the backlog's

        async def start_all() -> tuple[float, dict[str, float]]:
            t0 = time.time()
            waiting = await asyncio.gather(*(client.start_async("signalled") for _ in range(signalled)))
            await asyncio.gather(*(client.start_async("five") for _ in range(runs)))
            sent: dict[str, float] = {}

            async def go(run_id: str) -> None:
                await client.signal_async(run_id, "go")
                sent[run_id] = time.time()

            await asyncio.gather(*(go(h.id) for h in waiting))
            return t0, sent

        t0, sent = asyncio.run(start_all())
        started = time.time() - t0
        _wait(lambda: rows.finished() >= runs + signalled, "the backlog to drain")
        times = rows.times()
        cpu = sum(_cpu_seconds(p.pid) for p in procs) - idle_cpu
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        rows.close()
        client.close()
    return _summary(times, t0, sent, runs + signalled, cpu, started)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def sqlite_store() -> Iterator[tuple[str, Path]]:
    with fresh_dir("bench-backlog-") as workdir:
        yield f"sqlite:///{workdir / 'tether.db'}", workdir


@contextmanager
def postgres_store(base: str) -> Iterator[tuple[str, Path]]:
    import psycopg

    schema = f"bench_backlog_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    parts = urlsplit(base)
    url = urlunsplit(parts._replace(
        query=urlencode({"options": f"-csearch_path={schema}"}, quote_via=quote)))
    try:
        with fresh_dir("bench-backlog-") as workdir:
            yield url, workdir
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--signalled", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=100, help="per worker (default 100)")
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--sqlite-workers", type=int, default=2)
    parser.add_argument("--postgres-workers", type=int, default=3)
    parser.add_argument("--in-process", action="store_true",
                        help="also run the backlog on a worker inside this process (0 workers)")
    parser.add_argument("--url", default=os.environ.get(
        "TETHER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--profile", type=Path, help="run workers under cProfile, into this folder")
    options = parser.parse_args()
    global PROFILE
    PROFILE = options.profile
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
          f"{os.cpu_count()} CPUs; {options.runs:,} runs x {STEPS} steps + "
          f"{options.signalled:,} signalled; {options.reps} reps")
    stores = []
    if options.store in ("sqlite", "both"):
        stores.append(("SQLite", options.sqlite_workers, sqlite_store))
    if options.store in ("postgres", "both"):
        stores.append(("PostgreSQL", options.postgres_workers, lambda: postgres_store(options.url)))
    if options.in_process:
        stores = [(label, w, store) for label, workers, store in stores for w in (-workers, workers)]
    table: list[list[str]] = []
    for label, workers, store in stores:
        results = []
        for _ in range(options.reps):
            with store() as (url, workdir):
                # In-process (workers < 0): one worker with the slots of all the processes.
                results.append(one_rep(url, workdir, max(0, workers), options.runs,
                                       options.signalled, options.concurrency * abs(workers)))
            r = results[-1]
            where = f"{workers} workers" if workers > 0 else "in-process"
            print(f"  {label} {where}: {fmt(r['steps_per_s'])} steps/s, {fmt(r['per_cpu'])} per "
                  f"worker CPU-s, p99 {r['p99']:.2f}s "
                  f"(starts took {r['start_s']:.2f}s); load {os.getloadavg()[0]:.1f}", flush=True)
        rates = [r["steps_per_s"] for r in results]
        table.append([label, str(workers) if workers > 0 else "in-process", fmt(median(rates)), spread(rates),
                      fmt(median([r["per_cpu"] for r in results])),
                      fmt(median([r["p50"] for r in results])), fmt(median([r["p99"] for r in results]))])
    print_table(
        "backlog drained by separate worker processes",
        ["store", "workers", "steps/s", "spread", "per worker CPU-s", "p50 latency s",
         "p99 latency s"],
        table,
    )
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
