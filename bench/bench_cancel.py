"""Cancel latency: from `app.cancel(run)` in this process to the run's status `cancelled`, for a
run inside a minute-long step of a `tether worker` running in another process.

The worker learns of the cancel through its cancel watch (a read of its held runs' cancel
requests every 0.5 s), interrupts the step (an async step's task is cancelled, a thread step is
abandoned) and records `cancelled`. Expected: about 0.25-0.6 s on SQLite and PostgreSQL, far
below the step's minute and the heartbeat's third of a lease.

    python bench/bench_cancel.py [--store URL] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, fmt, fresh_dir, median, spread, wait_until

import tether

ROOT = BENCH_DIR.parent


def measure(store: str, workflow: str, runs: int, folder: Path) -> list[float]:
    env = dict(os.environ, BENCH_CANCEL_DIR=str(folder))
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(BENCH_DIR), *filter(None, [env.get("PYTHONPATH")])]
    )
    log = open(folder / "worker.log", "wb")  # noqa: SIM115 - lives as long as the worker
    worker = subprocess.Popen(
        [sys.executable, "-m", "tether", "worker", "--app", "_cancel_app:app", "--store", store],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    app = tether.App(store)
    latencies: list[float] = []
    try:
        for _ in range(runs):
            run_id = app.start(workflow).id
            marker = folder / f"{run_id}.started"
            wait_until(marker.exists, timeout=60, what=f"run {run_id} to start its step")
            sent = time.time()
            app.cancel(run_id)
            done = wait_until(
                lambda r=run_id: app.get_run(r).status == "cancelled", timeout=60,
                what=f"run {run_id} to end cancelled",
            )
            latencies.append(done - sent)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    for workflow in ("async_work", "thread_work"):
        with fresh_dir("bench-cancel-") as folder:
            store = args.store or f"sqlite:///{folder / 'tether.db'}"
            latencies = measure(store, workflow, args.runs, folder)
        print(
            f"{workflow:12} cancel -> cancelled: median {fmt(median(latencies))} s "
            f"(range {spread(latencies)} s, {len(latencies)} runs, {store.split(':')[0]})"
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
