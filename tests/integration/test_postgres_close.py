"""`App.close()` on PostgreSQL from where users call it: plain code, inside their own coroutine
(its loop is blocked in the call), after their loop ended. Every connection is closed by tether,
not left to the garbage collector (psycopg warns when it has to)."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import Iterator

import pytest

import tether
from tests.pg import postgres_schema_url, sessions

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def tagged_url() -> Iterator[tuple[str, str]]:
    """A schema URL whose connections carry their own application_name."""
    with postgres_schema_url() as url:
        name = url.rsplit("%3D", 1)[-1]
        yield url + "&application_name=" + name, name


def make_app(url: str) -> tether.App:
    app = tether.App(url)

    @app.workflow(name="wf")
    async def wf(ctx: tether.Context) -> int:
        return 1

    return app


def closed_without_leaks(close: object) -> list[str]:
    """Run `close`; psycopg's warnings about connections the garbage collector had to close."""
    gc.collect()  # earlier garbage (other tests') warns now, not below
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        close()  # type: ignore[operator]
        gc.collect()
    return [str(w.message) for w in caught
            if issubclass(w.category, ResourceWarning) and "psycopg" in str(w.message)]


def wait_for_no_sessions(name: str) -> None:
    deadline = time.monotonic() + 20  # bounds a hang; the server drops a closed session at once
    while sessions(name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sessions(name) == 0


@pytest.mark.parametrize("where", ["inside-the-coroutine", "after-the-loop-ended", "plain-code"])
def test_close_finishes_every_connection(tagged_url: tuple[str, str], where: str) -> None:
    url, name = tagged_url
    app = make_app(url)
    if where == "plain-code":
        assert app.run("wf").status == "succeeded"
        assert sessions(name) > 0
        leaks = closed_without_leaks(app.close)
    else:

        async def main() -> list[str]:
            assert (await app.run_async("wf")).status == "succeeded"
            await app.store.wait_for_work(0.01)  # the loop's LISTEN connection is open too
            assert sessions(name) > 0
            return closed_without_leaks(app.close) if where == "inside-the-coroutine" else []

        leaks = asyncio.run(main())
        if where == "after-the-loop-ended":
            leaks = closed_without_leaks(app.close)
    assert leaks == []
    wait_for_no_sessions(name)
