"""An app for the PostgreSQL process tests: every step's side effect lands in an `effects`
table keyed by the step's idempotency key, counting how often the step body ran.

Run a worker with ``python -m tests.e2e.pg_app`` (``TETHER_STORE`` names the database;
``PG_APP_LEASE`` the lease in seconds, ``PG_APP_STEP_SECONDS`` how long each step works,
``PG_APP_CONCURRENCY`` the worker's concurrency). Until the `tether worker` command lands this
stands in for ``tether worker --app tests.e2e.pg_app:app``.
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
app = tether.App(STORE, lease_seconds=float(os.environ.get("PG_APP_LEASE", "2")))
_local = threading.local()

EFFECTS_DDL = (
    "CREATE TABLE IF NOT EXISTS effects ("
    " key text PRIMARY KEY, run_id text NOT NULL, seq integer NOT NULL,"
    " executions integer NOT NULL DEFAULT 1, worker integer NOT NULL)"
)


def _connection() -> psycopg.Connection[Any]:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(parse_postgres_url(STORE)[0], autocommit=True)
    return conn


def _record_effect() -> None:
    step = tether.current_step()
    _connection().execute(
        "INSERT INTO effects (key, run_id, seq, worker) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (key) DO UPDATE SET executions = effects.executions + 1",
        (step.idempotency_key, step.run_id, step.seq, os.getpid()),
    )


@app.step
def effect(i: int) -> int:
    """The side effect: recorded once per idempotency key, executions counted."""
    _record_effect()
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
def tagged(i: int) -> int:
    """A slow side effect whose journaled result names the worker process that ran it."""
    _record_effect()
    time.sleep(float(os.environ.get("PG_APP_TAGGED_SECONDS", "0.5")))
    return os.getpid()


@app.workflow
async def tagged_chain(ctx: tether.Context, steps: int) -> list[int]:
    return [await tagged(i) for i in range(steps)]


def main() -> None:
    with psycopg.connect(parse_postgres_url(STORE)[0], autocommit=True) as conn:
        conn.execute(EFFECTS_DDL)
    app.run_worker(
        concurrency=int(os.environ.get("PG_APP_CONCURRENCY", "20")), grace_period=1.0
    )


if __name__ == "__main__":
    main()
