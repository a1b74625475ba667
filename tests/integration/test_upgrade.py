"""Runs written by an older tether carry on under this one: the deploy users do when they
upgrade. The fixtures in tests/fixtures/upgrade were made by tether 313ecab (before step events
were read from the journal rows: migrations sqlite/0024-0026, postgres/0024) with
tests/fixtures/upgrade/make.py — a SQLite file and a PostgreSQL dump holding a run waiting for a
signal, one signalled but not resumed, one queued and one finished, and what that version read
back from them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fixtures.upgrade.workflows import build
from tests.pg import postgres_base_url, postgres_schema_url, with_search_path

FIXTURES = Path(__file__).parents[1] / "fixtures" / "upgrade"
OLD = "v313ecab"
pytestmark = pytest.mark.timeout(120)


@contextlib.contextmanager
def old_store(kind: str, tmp_path: Path) -> Iterator[str]:
    """A store as the old version left it: a copy of the SQLite file, or the dump restored into
    a schema of its own."""
    if kind == "sqlite":
        shutil.copy(FIXTURES / f"{OLD}.sqlite", tmp_path / "old.db")
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    with postgres_schema_url():  # skips, or fails in CI, without a server
        pass
    schema = f"upgrade_{secrets.token_hex(5)}"
    dump = (FIXTURES / f"{OLD}.sql").read_text().replace("tether_upgrade_fixture", schema)
    with psycopg.connect(postgres_base_url(), autocommit=True) as conn:
        conn.execute(dump.encode())  # no parameters: one simple-query script
    try:
        yield with_search_path(postgres_base_url(), schema)
    finally:
        with psycopg.connect(postgres_base_url(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())


def stream(events: list[Any]) -> list[list[Any]]:
    return [[e.id, e.kind, e.seq] for e in events]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_runs_an_older_version_wrote_read_the_same_and_carry_on(
    kind: str, tmp_path: Path
) -> None:
    old = json.loads((FIXTURES / f"{OLD}.json").read_text())[kind]
    ids = {name: run["id"] for name, run in old["runs"].items()}
    with old_store(kind, tmp_path) as url:
        calls: list[tuple[str, str]] = []
        app = build(url, calls)
        try:
            # What the old version wrote reads as it did: status, journal, event stream.
            for name, was in old["runs"].items():
                info = await app.get_run_async(was["id"])
                assert info.status == was["status"], name
                assert [[s.seq, s.name, s.status] for s in info.steps] == was["steps"], name
                assert stream(await app.run_events_async(was["id"])) == was["events"], name

            # The unfinished runs finish under this version, on a worker of this version.
            await app.signal_async(ids["waiting"], "go", {"by": "new"})
            await app.signal_async(ids["queued"], "go", {"by": "new"})
            stop = asyncio.Event()
            worker = asyncio.create_task(app.run_worker_async(stop=stop))
            deadline = time.monotonic() + 60  # bounds a hang only
            pending = {ids["waiting"], ids["signalled"], ids["queued"]}
            while pending and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                pending = {r for r in pending if not (await app.get_run_async(r)).finished}
            stop.set()
            await worker
            assert not pending, f"runs that did not finish: {pending}"
        finally:
            app.close()

        # Nothing completed under the old version ran again: only the never-started run
        # charges; each unfinished run ships once.
        assert sorted(calls) == [("charge", "queued"), ("ship", "queued"), ("ship", "signalled"),
                                 ("ship", "waiting")]
        app = build(url, [])
        try:
            for name, go in (("waiting", {"by": "new"}), ("signalled", {"by": "old"}),
                             ("queued", {"by": "new"})):
                info = await app.get_run_async(ids[name])
                assert info.status == "succeeded", (name, info.error)
                assert info.output == {"receipt": f"charged {name}", "go": go,
                                       "shipped": f"shipped {name}"}
                # The stream: the old events first, unchanged, then this version's after them,
                # in order, each once, ending with the run's end.
                events = stream(await app.run_events_async(ids[name]))
                before = old["runs"][name]["events"]
                assert events[: len(before)] == before, name
                later = events[len(before):]
                positions = [e[0] for e in events]
                assert positions == sorted(set(positions)), events
                assert later[-1][1] == "finished", events
                kinds = [(k, s) for _, k, s in later]
                assert len(kinds) == len(set(kinds)), events
                assert ("step_started", 3) in kinds and ("step_completed", 3) in kinds, events
                if name != "queued":  # a charge completed before the upgrade is not announced again
                    assert ("step_completed", 1) not in kinds, events
        finally:
            app.close()
