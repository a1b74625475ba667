"""Statements sent straight through libpq: the few that a sequential run sends once per step or
per run (a journal write, a finish, a start).

A run executed alone waits for one statement per step, so what the client spends around each
statement is paid once per step, in series with the server's commit. psycopg's
`AsyncConnection.execute` spends ~40 µs of CPU per statement before and after the server's
part (a cursor, the query's conversion, a dumper per parameter, the prepared-statement
bookkeeping, a waiting generator); sent this way the same statement costs ~10 µs. A
`Prepared` statement is prepared once per connection under its own name, its parameters are
sent as text (their types inferred by the server from the statement, once, at prepare), and
its rows are read with psycopg's own row loader.

What the store sees is what `execute` gives: a failed statement raises the psycopg error of
its SQLSTATE, a lost connection `psycopg.OperationalError`, and a connection left mid-exchange
(a cancelled caller) is not idle, so the pool closes it rather than reuse it. For the pool's
autocommit connections, where each statement is its own transaction; inside a transaction
(a batch of several writes) the statement goes through psycopg.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Callable, Sequence
from typing import Any, LiteralString, TypeAlias

from psycopg import AsyncConnection, errors, pq
from psycopg.adapt import Transformer

Conn: TypeAlias = AsyncConnection[Any]

_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)
_GONE = "26000"
"""invalid_sql_statement_name: psycopg deallocates every prepared statement of a connection
after a ROLLBACK, DROP or ALTER on it (its own cache's rule), ours included."""

_prepared: weakref.WeakKeyDictionary[Conn, set[bytes]] = weakref.WeakKeyDictionary()
"""The statements prepared on each connection."""


class Prepared:
    """A statement with ``%s`` placeholders (no ``%b``, no literal ``%``), sent by `run`."""

    __slots__ = ("name", "sql", "text")

    sql: LiteralString

    def __init__(self, name: str, sql: LiteralString) -> None:
        if "%b" in sql or "%%" in sql:
            raise ValueError(f"statement {name}: only %s placeholders are sent as text")
        count = 0

        def number(_: re.Match[str]) -> str:
            nonlocal count
            count += 1
            return f"${count}"

        self.name = f"tether_{name}".encode()
        self.sql = sql
        self.text = re.sub(r"%s", number, sql).encode()


async def run(conn: Conn, statement: Prepared, params: Sequence[Any]) -> pq.abc.PGresult:
    """Execute `statement` with `params` (str, int, float, bool or None) on `conn`; the result,
    whose status is OK (else the statement's psycopg error is raised). Inside a transaction
    psycopg executes it: a statement found deallocated there could not run again."""
    pgconn = conn.pgconn
    if pgconn.transaction_status != pq.TransactionStatus.IDLE:
        cur = await conn.execute(statement.sql, params)
        assert cur.pgresult is not None
        return cur.pgresult
    values = [_text(v) for v in params]
    names = _prepared.get(conn)
    if names is None:
        names = _prepared[conn] = set()
    if statement.name not in names:
        await _prepare(conn, statement)
        names.add(statement.name)
    result = await _exchange(pgconn, lambda: pgconn.send_query_prepared(statement.name, values))
    if result.status == pq.ExecStatus.FATAL_ERROR and _sqlstate(result) == _GONE:
        # Deallocated under us: the statement did not run, so it can run again.
        names.clear()
        await _prepare(conn, statement)
        names.add(statement.name)
        result = await _exchange(pgconn, lambda: pgconn.send_query_prepared(statement.name, values))
    if result.status not in _OK:
        raise errors.error_from_result(result, encoding=conn.info.encoding)
    return result


def rows(conn: Conn, result: pq.abc.PGresult) -> list[tuple[Any, ...]]:
    """The result's rows, loaded as psycopg's cursors load them."""
    if not result.ntuples:
        return []
    loader = Transformer(conn)
    loader.set_pgresult(result)
    return loader.load_rows(0, result.ntuples, tuple)


def rowcount(result: pq.abc.PGresult) -> int:
    return result.command_tuples or 0


async def _prepare(conn: Conn, statement: Prepared) -> None:
    pgconn = conn.pgconn
    result = await _exchange(pgconn, lambda: pgconn.send_prepare(statement.name, statement.text))
    if result.status not in _OK:
        raise errors.error_from_result(result, encoding=conn.info.encoding)


async def _exchange(pgconn: pq.abc.PGconn, send: Any) -> pq.abc.PGresult:
    """Send, then wait for the one result of one statement (and the end of the exchange)."""
    loop = asyncio.get_running_loop()
    send()
    fd = pgconn.socket
    while pgconn.flush():  # the rest does not fit the socket's buffer yet
        await _ready(loop, fd, write=True)
    result: pq.abc.PGresult | None = None
    while True:
        if pgconn.is_busy():
            await _ready(loop, fd, write=False)
            pgconn.consume_input()
            continue
        got = pgconn.get_result()
        if got is None:
            break
        if result is None or got.status == pq.ExecStatus.FATAL_ERROR:
            result = got
    if result is None:
        raise errors.InternalError("PostgreSQL sent no result for a statement")
    return result


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, *, write: bool) -> None:
    future: asyncio.Future[None] = loop.create_future()
    if write:
        loop.add_writer(fd, _wake, future)
    else:
        loop.add_reader(fd, _wake, future)
    try:
        await future
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _sqlstate(result: pq.abc.PGresult) -> str | None:
    state = result.error_field(pq.DiagnosticField.SQLSTATE)
    return state.decode() if state else None


def _text(value: object) -> bytes | None:
    """A parameter in PostgreSQL's text format (the server knows its type from the statement)."""
    if value is None:
        return None
    encode = _TEXT.get(type(value))
    if encode is None:  # a subclass (a str enum): by what it is an instance of
        base = next((t for t in _TEXT if isinstance(value, t)), None)
        if base is None:
            raise TypeError(f"no text form for a parameter of type {type(value).__name__}")
        encode = _TEXT[base]
    return encode(value)


def _str(value: str) -> bytes:
    # Text parameters reach libpq as C strings: a NUL would silently cut the value (a run id,
    # a step name) where psycopg's execute refuses it. Refused the same way here.
    if "\x00" in value:
        raise errors.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    return value.encode()


def _bool(value: bool) -> bytes:
    return b"t" if value else b"f"


def _int(value: int) -> bytes:
    return b"%d" % value


def _float(value: float) -> bytes:
    # The shortest repr reads back as the same double ('inf' and 'nan' included).
    return float.__repr__(value).encode()


_TEXT: dict[type, Callable[[Any], bytes]] = {  # bool before int: a bool is an int
    bool: _bool,
    str: _str,
    int: _int,
    float: _float,
}
