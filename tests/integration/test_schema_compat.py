"""Which code may use a store (store/migrate.py): a store migrated by a newer tether whose
migration declares older code unsafe (``-- requires-code``) is refused by this code, with one
line saying what the store needs and what to do; a newer store whose migrations are additive
stays usable. The "newer tether" is this one with one fake migration more."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

import tether
from tests.e2e.harness import tether_cli
from tether import _version
from tether.store import migrate, postgres
from tether.store.postgres import parse_postgres_url

FUTURE = 9001


@contextmanager
def future_code(sql: str, version: str = "9.9.9") -> Iterator[None]:
    """This process runs as a tether that knows one more migration (`FUTURE`), for both
    dialects, and calls itself `version`."""
    real = migrate.migration_files

    def with_future(dialect: str) -> list[tuple[int, str, str]]:
        return [*real(dialect), (FUTURE, f"{FUTURE}_future.sql", sql)]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(migrate, "migration_files", with_future)
        patch.setattr(postgres, "migration_files", with_future)
        patch.setattr(migrate, "__version__", version)
        yield


def new_app(url: str) -> tether.App:
    app = tether.App(url, lease_seconds=2.0)

    @app.step
    async def hello(who: str) -> str:
        return f"hello {who}"

    @app.workflow
    async def greet(ctx: tether.Context, who: str) -> str:
        return await hello(who)

    return app


def migrated_to(url: str) -> list[int]:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return [conn.execute("PRAGMA user_version").fetchone()[0]]
    with psycopg.connect(parse_postgres_url(url)[0]) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def make_future_store(url: str, sql: str) -> str:
    """A store migrated by the future tether, holding one finished run; returns its id."""
    with future_code(sql):
        app = new_app(url)
        try:
            info = app.run("greet", {"who": "future"})
            assert info.status == "succeeded"
            return info.id
        finally:
            app.close()


def test_a_store_from_a_future_that_declares_older_code_unsafe_is_refused(
    store_url: str,
) -> None:
    make_future_store(store_url, f"-- requires-code: {FUTURE}\nCREATE TABLE future_rows (x integer);\n")
    before = migrated_to(store_url)
    app = new_app(store_url)
    try:
        with pytest.raises(tether.SchemaTooNew) as refused:
            app.run("greet", {"who": "today"})
    finally:
        app.close()
    message = str(refused.value)
    assert "\n" not in message
    assert f"{FUTURE}_future.sql" in message and "tether 9.9.9" in message
    assert f"knows migrations up to {migrate.migration_files('sqlite')[-1][0]:04d}" in message
    assert f"this tether ({_version.__version__})" in message
    assert "upgrade tether on this host" in message
    assert migrated_to(store_url) == before  # nothing applied, nothing recorded


def test_a_store_from_a_future_with_only_additive_migrations_stays_usable(
    store_url: str,
) -> None:
    earlier = make_future_store(store_url, "CREATE TABLE future_rows (x integer);\n")
    app = new_app(store_url)
    try:
        info = app.run("greet", {"who": "today"})
        assert info.status == "succeeded" and info.output == "hello today"
        assert app.get_run(earlier).output == "hello future"
    finally:
        app.close()


def test_the_requirement_of_a_migration_is_recorded_once_applied_by_code_that_knows_it(
    store_url: str,
) -> None:
    # The future code itself opens its own store again: it knows the migration it requires.
    make_future_store(store_url, f"-- requires-code: {FUTURE}\nCREATE TABLE future_rows (x integer);\n")
    with future_code(f"-- requires-code: {FUTURE}\nCREATE TABLE future_rows (x integer);\n"):
        app = new_app(store_url)
        try:
            assert app.run("greet", {"who": "again"}).status == "succeeded"
        finally:
            app.close()


def test_the_cli_on_a_store_from_the_future_says_so_in_one_line_and_exits_2(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'future.db'}"
    make_future_store(url, f"-- requires-code: {FUTURE}\nCREATE TABLE future_rows (x integer);\n")
    result = tether_cli("runs", store=url)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "needs newer tether" in lines[0] and "upgrade tether on this host" in lines[0]
    assert f"{FUTURE}_future.sql" in lines[0]


def test_every_requirement_a_migration_declares_is_one_this_code_meets() -> None:
    # A migration cannot require code newer than itself: that store could never be opened.
    for dialect in ("sqlite", "postgres"):
        for number, name, sql in migrate.migration_files(dialect):
            requires = migrate.required_code(sql)
            assert requires is None or requires <= number, name


async def test_a_running_worker_stops_when_a_newer_tether_migrates_the_store_under_it(
    store_url: str,
) -> None:
    # The rolling upgrade itself: this worker is running when the newer code arrives. It
    # stops within about a lease period instead of carrying on beside the newer code, gives
    # its run back unfinished, and the newer code's worker finishes that run.
    app = tether.App(store_url, lease_seconds=1.0)
    entered = asyncio.Event()
    finish = asyncio.Event()

    @app.step
    async def slow() -> str:
        entered.set()
        await finish.wait()
        return "done"

    @app.workflow
    async def waits(ctx: tether.Context) -> str:
        return await slow()

    future_sql = f"-- requires-code: {FUTURE}\nCREATE TABLE future_rows (x integer);\n"
    try:
        run = (await app.start_async("waits", {})).id
        worker = asyncio.create_task(app.run_worker_async(concurrency=2))
        await asyncio.wait_for(entered.wait(), 30)
        with future_code(future_sql):
            newer = new_app(store_url)

            @newer.step(name="slow")
            async def slow_now() -> str:
                return "done by the newer code"

            @newer.workflow(name="waits")
            async def waits_now(ctx: tether.Context) -> str:
                return await slow_now()

            try:
                await newer.store.open()  # migrates: the store is now too new for `app`
                with pytest.raises(tether.SchemaTooNew, match="upgrade tether on this host"):
                    await asyncio.wait_for(worker, 30)
                info = await newer.get_run_async(run)
                assert info.status == "queued", info  # given back, not finished nor failed
                assert not any(s.status == "completed" for s in info.steps)
                stop = asyncio.Event()
                newer_worker = asyncio.create_task(newer.run_worker_async(stop=stop))
                for _ in range(600):
                    info = await newer.get_run_async(run)
                    if info.finished:
                        break
                    await asyncio.sleep(0.05)
                stop.set()
                await newer_worker
                assert info.status == "succeeded" and info.output == "done by the newer code"
            finally:
                await newer.store.close()
    finally:
        finish.set()
        await app.store.close()
