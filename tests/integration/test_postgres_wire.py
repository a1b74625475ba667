"""Statements sent straight through libpq (`tether.store.postgres_wire`) behave as psycopg's
`execute` does: same values, same errors, and they survive psycopg dropping the connection's
prepared statements."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import psycopg
import pytest

from tests.pg import postgres_base_url, postgres_schema_url
from tether.store import postgres_wire as wire

pytestmark = pytest.mark.timeout(60)

INSERT = wire.Prepared(
    "test_insert",
    "INSERT INTO t (id, x, flag, note) VALUES (%s, %s, %s, %s) RETURNING id, x, flag, note",
)


@pytest.fixture
async def conn() -> AsyncIterator[psycopg.AsyncConnection[object]]:
    with postgres_schema_url() as url:
        c = await psycopg.AsyncConnection.connect(url, autocommit=True)
        await c.execute("CREATE TABLE t (id int PRIMARY KEY, x float8, flag bool, note text)")
        try:
            yield c
        finally:
            await c.close()


async def test_values_come_back_as_sent(conn: psycopg.AsyncConnection[object]) -> None:
    sent = [
        (1, 0.1 + 0.2, True, "ünï'code\\"),
        (2, 1e-310, False, None),
        (3, math.inf, None, ""),
        (4, -math.inf, True, "x"),
        (5, None, None, None),
    ]
    for row in sent:
        assert wire.rows(conn, await wire.run(conn, INSERT, row)) == [row]
    cur = await conn.execute("SELECT id, x, flag, note FROM t ORDER BY id")
    assert await cur.fetchall() == sent
    [(nan,)] = wire.rows(
        conn, await wire.run(conn, wire.Prepared("t_nan", "SELECT %s::float8"), [math.nan])
    )
    assert math.isnan(nan)


async def test_errors_are_psycopgs(conn: psycopg.AsyncConnection[object]) -> None:
    await wire.run(conn, INSERT, (1, 1.0, True, "a"))
    with pytest.raises(psycopg.errors.UniqueViolation):
        await wire.run(conn, INSERT, (1, 2.0, True, "b"))
    # The connection is still usable, by both paths.
    assert wire.rowcount(await wire.run(conn, INSERT, (2, 2.0, True, "b"))) == 1
    cur = await conn.execute("SELECT count(*) FROM t")
    assert await cur.fetchone() == (2,)


async def test_a_nul_in_a_string_is_refused_not_cut(conn: psycopg.AsyncConnection[object]) -> None:
    # libpq takes text parameters as C strings: sent as is, "ab\0cd" would be stored as "ab".
    with pytest.raises(psycopg.DataError, match="NUL"):
        await wire.run(conn, INSERT, (1, 1.0, True, "ab\x00cd"))
    cur = await conn.execute("SELECT count(*) FROM t")
    assert await cur.fetchone() == (0,)


async def test_a_statement_deallocated_under_it_is_prepared_again(
    conn: psycopg.AsyncConnection[object],
) -> None:
    """psycopg sends DEALLOCATE ALL after a rollback on a connection whose statements it
    prepared; ours are dropped with its own."""
    await wire.run(conn, INSERT, (1, 1.0, True, "a"))
    await conn.execute("DEALLOCATE ALL")
    assert wire.rowcount(await wire.run(conn, INSERT, (2, 2.0, False, "b"))) == 1


async def test_a_lost_connection_raises_operational_error(
    conn: psycopg.AsyncConnection[object],
) -> None:
    await wire.run(conn, INSERT, (1, 1.0, True, "a"))
    cur = await conn.execute("SELECT pg_backend_pid()")
    row = await cur.fetchone()
    assert row is not None
    with psycopg.connect(postgres_base_url(), autocommit=True) as killer:
        killer.execute("SELECT pg_terminate_backend(%s)", (row[0],))
    await asyncio.sleep(0.05)
    with pytest.raises(psycopg.OperationalError):
        await wire.run(conn, INSERT, (2, 2.0, True, "b"))


async def test_subclasses_are_sent_as_what_they_are(conn: psycopg.AsyncConnection[object]) -> None:
    import enum

    class Kind(enum.StrEnum):
        STEP = "step"

    class Count(enum.IntEnum):
        TWO = 2

    row = (Count.TWO, 2.5, True, Kind.STEP)
    assert wire.rows(conn, await wire.run(conn, INSERT, row)) == [(2, 2.5, True, "step")]
    with pytest.raises(TypeError):
        await wire.run(conn, INSERT, (3, 1.0, True, b"bytes"))


async def test_inside_a_transaction_a_deallocated_statement_still_runs(
    conn: psycopg.AsyncConnection[object],
) -> None:
    """A batch of several writes runs them in one transaction, where a statement found
    deallocated would abort the transaction: there psycopg executes it."""
    await wire.run(conn, INSERT, (1, 1.0, True, "a"))
    async with conn.transaction():
        await conn.execute("DEALLOCATE ALL")
        assert wire.rowcount(await wire.run(conn, INSERT, (2, 2.0, False, "b"))) == 1
        assert wire.rows(conn, await wire.run(conn, INSERT, (3, 3.0, None, None))) == [
            (3, 3.0, None, None)
        ]
    cur = await conn.execute("SELECT count(*) FROM t")
    assert await cur.fetchone() == (3,)
