"""The PostgreSQL store's connections: a pool per event loop (`Pool`), and what a store URL
says (`parse_postgres_url`)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus

from tether.errors import UserError

Conn: TypeAlias = AsyncConnection[Any]


class Pool:
    """Connections of one event loop. Deliberately not psycopg_pool: its background tasks
    (connecting, refilling) outlive the work and make ``asyncio.run()`` hang at exit when a loop
    ends with the pool open. Here connections are made inline, in the task that needs one, so a
    loop can end at any time; idle connections are just sockets. Taking and giving back a
    connection awaits nothing while one is free (every statement pays for it)."""

    def __init__(self, conninfo: str, max_size: int, connect_timeout: float) -> None:
        self.conninfo = conninfo
        self.kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in conninfo:  # libpq waits forever on a silent host
            self.kwargs["connect_timeout"] = max(2, round(connect_timeout))
        self.idle: list[Conn] = []
        self.free = max_size
        self.queue: collections.deque[asyncio.Future[None]] = collections.deque()
        self.closed = False

    async def take(self) -> Conn:
        if self.free > 0 and not self.queue:
            self.free -= 1
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.queue.append(turn)
            try:
                await turn  # handed a slot by `give_back`
            except BaseException:
                if turn.done() and not turn.cancelled():
                    self._pass_slot()  # handed one as we were cancelled: pass it on
                else:
                    with contextlib.suppress(ValueError):  # skipped already if done
                        self.queue.remove(turn)
                raise
        conn = self.idle.pop() if self.idle else None
        if conn is None or conn.closed:
            try:
                conn = await AsyncConnection.connect(self.conninfo, **self.kwargs)
            except BaseException:
                self._pass_slot()
                raise
        return conn

    async def give_back(self, conn: Conn, healthy: bool) -> None:
        reusable = (
            healthy
            and not self.closed
            and not conn.closed
            and conn.info.transaction_status == TransactionStatus.IDLE
        )
        if reusable:
            self.idle.append(conn)
        self._pass_slot()
        if not reusable:
            await close_quietly(conn)

    def _pass_slot(self) -> None:
        while self.queue:
            turn = self.queue.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.free += 1

    async def close(self) -> None:
        self.closed = True
        idle, self.idle = self.idle, []
        for conn in idle:
            await close_quietly(conn)

    def abandon(self) -> None:
        """Close idle connections of a loop that no longer runs (no awaiting possible)."""
        self.closed = True
        idle, self.idle = self.idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.pgconn.finish()


async def close_quietly(conn: Conn) -> None:
    with contextlib.suppress(Exception):
        await conn.close()


def parse_postgres_url(url: str) -> tuple[str, int, float]:
    """``(libpq conninfo, pool_max_size, retry_seconds)`` from a store URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise UserError(f"not a PostgreSQL URL: {url!r} (expected postgresql://user@host/db)")
    libpq: list[tuple[str, str]] = []
    pool_max, retry = 8, 10.0
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        try:
            if key == "pool_max_size":
                pool_max = int(value)
            elif key == "retry_seconds":
                retry = float(value)
            else:
                libpq.append((key, value))
        except ValueError:
            raise UserError(
                f"invalid {key}={value!r} in store URL {url!r}: expected a number"
            ) from None
    if pool_max < 1:
        raise UserError(f"pool_max_size must be at least 1 in {url!r}")
    conninfo = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(libpq)))
    return conninfo, pool_max, retry
