"""Named queues in both dialects: declaring them, starting runs in them, and claiming their
runs within the limits (the `Store` queue methods and claims call these).

A run in a queue is never claimed by the ordinary claim statement (it skips ``queue IS NOT
NULL``); `claim_queued` picks them instead, ranked per key and per queue by priority then age,
and takes at most what each limit leaves:

* ``per_key``: running runs of the queue with the same key;
* ``concurrency``: running runs of the queue;
* ``rate_count`` per ``rate_seconds``: runs of the queue first started in that window (a run
  resuming after a wait started long ago and is not counted again).

A run waiting (suspended) holds no slot: it is counted again once claimed. SQLite serialises
claims (one writer); PostgreSQL takes a transaction lock per claim of queued runs, so two
workers never both see the last free slot. One module for both dialects because the statements
are alike: SQLite functions take a `sqlite3.Connection`, PostgreSQL ones (``pg_*``) an async
psycopg connection.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, LiteralString

from tether.store import sqlite_sql as q
from tether.store.base import Claim, NewRun, QueueRecord, RunRecord

if TYPE_CHECKING:  # psycopg is optional: SQLite users never import it
    from tether.store.postgres_sql import Conn

_LOCK = 74201  # the advisory lock key of queue claims (PostgreSQL)


def _ranked(runnable: str, now: str, mark: str) -> str:
    """Queued runs of queues, ranked, keeping those the limits leave room for. `runnable`
    filters the workflows the claimer knows; `now` is the current time; `mark` a placeholder."""
    return f"""
    SELECT id, workflow, due FROM (
      SELECT c.*, ROW_NUMBER() OVER (
               PARTITION BY c.queue ORDER BY c.priority DESC, c.due, c.id) AS qrank
        FROM (
          SELECT r.id, r.workflow, r.wake_at AS due, r.queue, r.priority, r.started_at,
                 qd.concurrency, qd.per_key, qd.rate_count,
                 coalesce(qb.n, 0) AS qbusy, coalesce(kb.n, 0) AS kbusy,
                 coalesce(qs.n, 0) AS qstarted,
                 ROW_NUMBER() OVER (PARTITION BY r.queue, r.queue_key
                                    ORDER BY r.priority DESC, r.wake_at, r.id) AS krank
            FROM runs r
            LEFT JOIN queues qd ON qd.name = r.queue
            LEFT JOIN (SELECT queue, count(*) AS n FROM runs
                        WHERE status = 'running' AND queue IS NOT NULL GROUP BY queue) qb
                   ON qb.queue = r.queue
            LEFT JOIN (SELECT queue, queue_key, count(*) AS n FROM runs
                        WHERE status = 'running' AND queue IS NOT NULL
                        GROUP BY queue, queue_key) kb
                   ON kb.queue = r.queue AND kb.queue_key = r.queue_key
            LEFT JOIN (SELECT s.queue, count(*) AS n FROM runs s JOIN queues sq
                         ON sq.name = s.queue AND sq.rate_count IS NOT NULL
                        WHERE s.started_at >= {now} - sq.rate_seconds GROUP BY s.queue) qs
                   ON qs.queue = r.queue
           WHERE r.queue IS NOT NULL AND r.status IN ('queued', 'waiting')
             AND r.wake_at <= {now} AND {runnable}
        ) c
       WHERE c.per_key IS NULL OR c.krank <= c.per_key - c.kbusy
    ) ranked
    WHERE (concurrency IS NULL OR qrank <= concurrency - qbusy)
      AND (rate_count IS NULL OR started_at IS NOT NULL OR qrank <= rate_count - qstarted)
    ORDER BY due LIMIT {mark}
    """


# --- SQLite ---------------------------------------------------------------------------------------


def put_queue(conn: sqlite3.Connection, queue: QueueRecord) -> None:
    conn.execute(
        "INSERT INTO queues (name, concurrency, per_key, rate_count, rate_seconds, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
        "concurrency = excluded.concurrency, per_key = excluded.per_key, "
        "rate_count = excluded.rate_count, rate_seconds = excluded.rate_seconds, "
        "updated_at = excluded.updated_at",
        (queue.name, queue.concurrency, queue.per_key, queue.rate_count, queue.rate_seconds,
         time.time()),
    )


def create_queued_run(
    conn: sqlite3.Connection, new: NewRun, owner: str | None, lease_seconds: float
) -> tuple[RunRecord, int | None, bool]:
    """`create_run` for a run in a queue: queue, key and priority in the same transaction."""
    run, token, created = q.create_run(conn, new, owner, lease_seconds)
    if created and new.queue is not None:
        conn.execute(
            "UPDATE runs SET queue = ?, queue_key = ?, priority = ?, waiting_for = ? "
            "WHERE id = ?",
            (new.queue, new.queue_key or "", new.priority, queue_reason(new), new.id),
        )
    return run, token, created


def claim_queued(
    conn: sqlite3.Connection,
    owner: str,
    workflows: tuple[tuple[str, str], ...],
    limit: int,
    lease_seconds: float,
) -> list[Claim]:
    if limit <= 0 or conn.execute(
        "SELECT 1 FROM runs WHERE queue IS NOT NULL AND status IN ('queued', 'waiting') "
        "AND wake_at <= ? LIMIT 1", (time.time(),)
    ).fetchone() is None:
        return []
    names = sorted({name for name, _ in workflows})
    keys = sorted(f"{name}\x00{version}" for name, version in workflows)
    runnable = (
        f"(r.version IS NULL AND r.workflow IN ({','.join('?' * len(names))}) "
        f"OR r.workflow || char(0) || r.version IN ({','.join('?' * len(keys))}))"
    )
    now = time.time()
    # The statement's placeholders in text order: rate window, wake time, workflows, limit.
    rows = conn.execute(_ranked(runnable, "?", "?"), (now, now, *names, *keys, limit)).fetchall()
    latest = dict(workflows)
    claims: list[Claim] = []
    for run_id, workflow, _ in rows:
        conn.execute("UPDATE runs SET version = coalesce(version, ?) WHERE id = ?",
                     (latest.get(workflow), run_id))
        claim = q.claim_one(conn, run_id, owner, lease_seconds)
        if claim is not None:
            claims.append(claim)
    return claims


# --- PostgreSQL -----------------------------------------------------------------------------------


async def pg_put_queue(conn: Conn, queue: QueueRecord) -> None:
    await conn.execute(
        "INSERT INTO queues (name, concurrency, per_key, rate_count, rate_seconds, updated_at) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
        "concurrency = excluded.concurrency, per_key = excluded.per_key, "
        "rate_count = excluded.rate_count, rate_seconds = excluded.rate_seconds, "
        "updated_at = excluded.updated_at",
        (queue.name, queue.concurrency, queue.per_key, queue.rate_count, queue.rate_seconds,
         time.time()),
    )


async def pg_create_queued_run(
    conn: Conn, new: NewRun, owner: str | None, lease_seconds: float
) -> tuple[RunRecord, int | None, bool]:
    from tether.store import postgres_sql as pq

    (run, token, created), _ = await pq.create_run(conn, new, owner, lease_seconds)
    if created and new.queue is not None:
        await conn.execute(
            "UPDATE runs SET queue = %s, queue_key = %s, priority = %s, waiting_for = %s "
            "WHERE id = %s",
            (new.queue, new.queue_key or "", new.priority, queue_reason(new), new.id),
        )
    return run, token, created


async def pg_any_queued(conn: Conn) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM runs WHERE queue IS NOT NULL AND status IN ('queued', 'waiting') "
        "AND wake_at <= extract(epoch FROM statement_timestamp())::float8 LIMIT 1"
    )
    return await cur.fetchone() is not None


async def pg_claim_queued(
    conn: Conn,
    owner: str,
    workflows: Sequence[tuple[str, str]],
    limit: int,
    lease_seconds: float,
) -> list[Claim]:
    """In a transaction: lock out other claims of queued runs, rank, claim."""
    from tether.store import postgres_journal_sql as pq

    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
    latest: dict[str, str] = {}
    for name, version in workflows:
        latest[name] = version
    runnable: LiteralString = (
        "((r.version IS NULL AND r.workflow = ANY(%(names)s::text[])) OR (r.workflow, r.version)"
        " IN (SELECT * FROM unnest(%(pn)s::text[], %(pv)s::text[])))"
    )
    now = "extract(epoch FROM statement_timestamp())::float8"
    cur = await conn.execute(
        _ranked(runnable, now, "%(limit)s"),  # pyright: ignore[reportArgumentType]
        {
            "names": list(latest),
            "pn": [n for n, _ in workflows],
            "pv": [v for _, v in workflows],
            "limit": limit,
        },
    )
    rows = await cur.fetchall()
    claims: list[Claim] = []
    for run_id, workflow, _ in rows:
        await conn.execute("UPDATE runs SET version = coalesce(version, %s) WHERE id = %s",
                           (latest.get(workflow), run_id))
        claim, _notify = await pq.claim_run(conn, run_id, owner, lease_seconds)
        if claim is not None:
            claims.append(claim)
    return claims


def queue_reason(new: NewRun) -> str:
    """What a queued run of a queue waits for (shown as its ``waiting_for``)."""
    key = f", key {new.queue_key!r}" if new.queue_key else ""
    return f"capacity in queue {new.queue!r}{key}"
