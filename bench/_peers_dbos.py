"""DBOS Transact on its SQLite system database: W workflows x S no-op steps, one after another.

Run by bench_engine.py in a process of its own; prints one JSON object:
``{"steps_per_s": [...], "steps_per_cpu_s": [...], "journal_mode": ..., "synchronous": ...}``
(``steps_per_cpu_s``: steps per second of this process's CPU time, all its threads).

Settings (``--sqlite``):

* ``default`` — what DBOS does on its own: SQLAlchemy's pysqlite engine with IMMEDIATE
  transactions; SQLite's defaults, i.e. a rollback journal (``journal_mode=delete``) and
  ``synchronous=FULL``.
* ``wal-normal`` / ``wal-full`` — the same engine with ``journal_mode=WAL`` and the given
  ``synchronous`` set on every connection it opens (an SQLAlchemy ``connect`` listener), to
  compare with tether at equal settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from dbos import DBOS
from sqlalchemy import event

PRAGMAS = {
    "default": [],
    "wal-normal": ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"],
    "wal-full": ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL"],
}


@DBOS.step()
def noop(i: int) -> int:
    return i


@DBOS.workflow()
def sequence(steps: int) -> int:
    for i in range(steps):
        noop(i)
    return steps


def _configure(setting: str) -> None:
    statements = PRAGMAS[setting]
    if not statements:
        return

    @event.listens_for(sa.engine.Engine, "connect")
    def apply(dbapi_conn: Any, _record: Any) -> None:
        for statement in statements:
            dbapi_conn.execute(statement)


def _settings(dbos: DBOS) -> tuple[str, int]:
    # Read back what the system database really runs with, on a connection of DBOS's engine.
    engine = dbos._sys_db.engine  # private attribute, read-only use
    with engine.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
    return str(mode), int(sync or 0)


def measure(workflows: int, steps: int, reps: int, setting: str) -> dict[str, Any]:
    _configure(setting)
    rates: list[float] = []
    cpu_rates: list[float] = []
    mode, sync = "?", -1
    for _ in range(reps):
        folder = Path(tempfile.mkdtemp(prefix="bench-dbos-"))
        url = f"sqlite:///{folder / 'dbos.sqlite'}"
        dbos = DBOS(config={"name": "bench", "system_database_url": url, "log_level": "WARNING"})
        DBOS.launch()
        mode, sync = _settings(dbos)
        sequence(steps)  # warm-up: first-call costs are not what we compare
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(workflows):
            sequence(steps)
        elapsed = time.perf_counter() - started
        rates.append(workflows * steps / elapsed)
        cpu_rates.append(workflows * steps / (time.process_time() - cpu))
        DBOS.destroy()
    return {
        "steps_per_s": rates,
        "steps_per_cpu_s": cpu_rates,
        "journal_mode": mode,
        "synchronous": sync,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sqlite", choices=sorted(PRAGMAS), default="default")
    args = parser.parse_args()
    logging.getLogger("dbos").setLevel(logging.WARNING)
    result = measure(args.workflows, args.steps, args.reps, args.sqlite)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
