"""An app for the PostgreSQL process tests: every step execution appends a row to an
`executions` table (no uniqueness on the key: a step that runs twice leaves two rows).

Each row records, when the execution began, whether the journal already held a completed
result for that step (``journaled``: the engine ran a journaled step again, which must never
happen). The tests compare these rows with the journal and with the workers they killed.

Run a worker with ``python -m tests.e2e.pg_app`` (``TETHER_STORE`` names the database;
``PG_APP_LEASE`` the lease in seconds, ``PG_APP_STEP_SECONDS`` how long each step works,
``PG_APP_CONCURRENCY`` the worker's concurrency).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psycopg

import tether
from tether.store.postgres import parse_postgres_url

STORE = os.environ.get("TETHER_STORE", "postgresql://postgres@127.0.0.1:5432/test")
app = tether.App(
    STORE, lease_seconds=float(os.environ.get("PG_APP_LEASE", "2")), max_recoveries=100
)
_local = threading.local()

EXECUTIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS executions ("
    " id bigserial PRIMARY KEY, key text NOT NULL, run_id text NOT NULL,"
    " seq integer NOT NULL, worker integer NOT NULL, journaled boolean NOT NULL)"
)


def _connection() -> psycopg.Connection[Any]:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(parse_postgres_url(STORE)[0], autocommit=True)
    return conn


def _record_execution() -> None:
    """Append this execution (committed before the step's work starts)."""
    step = tether.current_step()
    _connection().execute(
        "INSERT INTO executions (key, run_id, seq, worker, journaled) "
        "SELECT %s, %s, %s, %s, EXISTS (SELECT 1 FROM steps "
        "  WHERE run_id = %s AND seq = %s AND status = 'completed')",
        (step.idempotency_key, step.run_id, step.seq, os.getpid(), step.run_id, step.seq),
    )


def gate_open(gate: str) -> bool:
    """The file `gate` opens the gate for every worker; ``<gate>.<pid>`` for one only."""
    return os.path.exists(gate) or os.path.exists(f"{gate}.{os.getpid()}")


@app.step
def effect(i: int) -> int:
    """The side effect: one `executions` row per execution."""
    _record_execution()
    pause = float(os.environ.get("PG_APP_STEP_SECONDS", "0.02"))
    if pause:
        time.sleep(pause)
    return i


@app.workflow
async def chain(ctx: tether.Context, steps: int) -> int:
    total = 0
    for i in range(steps):
        total += await effect(i)
    return total


@app.step
def tagged(i: int, gate: str = "") -> int:
    """A side effect whose journaled result names the worker process that ran it; with a
    `gate` it runs until the gate opens (see `gate_open`)."""
    _record_execution()
    while gate and not gate_open(gate):
        time.sleep(0.02)
    return os.getpid()


@app.workflow
async def tagged_chain(
    ctx: tether.Context, steps: int, gate: str = "", gate_at: int = -1
) -> list[int]:
    """`steps` tagged steps; the one at index `gate_at` waits for `gate`."""
    return [await tagged(i, gate if i == gate_at else "") for i in range(steps)]


def main() -> None:
    with psycopg.connect(parse_postgres_url(STORE)[0], autocommit=True) as conn:
        conn.execute(EXECUTIONS_DDL)
    app.run_worker(
        concurrency=int(os.environ.get("PG_APP_CONCURRENCY", "20")), grace_period=1.0
    )


if __name__ == "__main__":
    main()
