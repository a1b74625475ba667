"""Provider rate limits in both dialects: a sliding log of grants per limit key.

`acquire` either grants one request now (recording it, with its token estimate) or says how
many seconds to wait until the window has room. `settle` stamps a grant again once its request
was answered: the provider counts a request when it arrives, which may be well after the grant
on a busy worker, and by the answer it has surely arrived. The decision is made under the store's write
serialisation (SQLite: one writer; PostgreSQL: a transaction lock per key, with the server's
clock), so every worker on every host shares one count.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # psycopg is optional: SQLite users never import it
    from tether.store.postgres_sql import Conn


def decide(
    grants: Sequence[tuple[float, int]], now: float, requests: int | None, tokens: int | None,
    window: float, cost: int,
) -> float:
    """Seconds to wait before one more request of `cost` tokens fits (0: it fits now), given
    the `grants` ``(at, tokens)`` of the current window, oldest first."""
    wait = 0.0
    if requests is not None and len(grants) >= requests:
        # The oldest grants must leave the window until one slot is free.
        wait = max(wait, grants[len(grants) - requests][0] + window - now)
    if tokens is not None:
        used = sum(t for _, t in grants)
        for at, spent in grants:
            if used + cost <= tokens:
                break
            used -= spent
            wait = max(wait, at + window - now)
    return max(0.0, wait)


def acquire(
    conn: sqlite3.Connection, key: str, requests: int | None, tokens: int | None,
    window: float, cost: int, grant: str,
) -> float:
    now = time.time()
    conn.execute("DELETE FROM rate_grants WHERE limit_key = ? AND at <= ?", (key, now - window))
    grants = [(float(at), int(t)) for at, t in conn.execute(
        "SELECT at, tokens FROM rate_grants WHERE limit_key = ? ORDER BY at", (key,))]
    wait = decide(grants, now, requests, tokens, window, cost)
    if wait <= 0:
        conn.execute(
            "INSERT INTO rate_grants (limit_key, at, tokens, grant_id) VALUES (?, ?, ?, ?)",
            (key, now, cost, grant))
    return wait


async def pg_acquire(
    conn: Conn, key: str, requests: int | None, tokens: int | None, window: float, cost: int,
    grant: str,
) -> float:
    """In a transaction: one grant decision per key at a time, on the server's clock."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("tether.rate:" + key,))
    cur = await conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
    row = await cur.fetchone()
    assert row is not None
    now = float(row[0])
    await conn.execute("DELETE FROM rate_grants WHERE limit_key = %s AND at <= %s",
                       (key, now - window))
    cur = await conn.execute(
        "SELECT at, tokens FROM rate_grants WHERE limit_key = %s ORDER BY at", (key,))
    grants = [(float(at), int(t)) for at, t in await cur.fetchall()]
    wait = decide(grants, now, requests, tokens, window, cost)
    if wait <= 0:
        await conn.execute(
            "INSERT INTO rate_grants (limit_key, at, tokens, grant_id) VALUES (%s, %s, %s, %s)",
            (key, now, cost, grant))
    return wait


def settle(conn: sqlite3.Connection, grant: str) -> None:
    """The request of `grant` was answered: count it in the window from now (it reached the
    provider at the latest now, however long it took to be sent)."""
    conn.execute("UPDATE rate_grants SET at = max(at, ?) WHERE grant_id = ?", (time.time(), grant))


async def pg_settle(conn: Conn, grant: str) -> None:
    await conn.execute(
        "UPDATE rate_grants SET at = greatest(at, extract(epoch FROM clock_timestamp())::float8) "
        "WHERE grant_id = %s", (grant,))
