"""docs/operations.md: on PostgreSQL, pruning skips rows another session holds — it neither
waits behind a session that has a finished run locked nor deletes that run from under it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.pg import postgres_schema_url
from tether.store.base import NewRun, StepRecord
from tether.store.postgres import PostgresStore, parse_postgres_url

pytestmark = pytest.mark.timeout(60)
WF = (("wf", "1"),)


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_schema_url() as url:
        yield url


async def test_prune_skips_a_finished_run_another_session_holds(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.open()
    try:
        for run_id in ("r1", "r2", "r3"):
            await store.create_run(NewRun(id=run_id, workflow="wf", version="1", input=None))
            [claim] = await store.claim_runs("w", WF, limit=1, lease_seconds=30)
            step = StepRecord(claim.run.id, 1, "s", "step", "completed", output=1)
            assert await store.write_step(claim.run.id, claim.token, step)
            assert await store.finish_run(claim.run.id, claim.token, status="succeeded")

        async with await psycopg.AsyncConnection.connect(parse_postgres_url(pg_url)[0]) as other:
            # Another session (an operator's query, a report) holds run r2's row.
            await other.execute("SELECT 1 FROM runs WHERE id = 'r2' FOR UPDATE")
            # Not blocked by it: a prune that waited would hit this deadline.
            pruned = await asyncio.wait_for(store.prune(time.time() + 60), 10)
            assert pruned == 2
            assert await store.get_run("r2") is not None
            assert [s.seq for s in await store.load_steps("r2")] == [1]
            assert await store.get_run("r1") is None and await store.get_run("r3") is None
            assert await store.load_steps("r1") == []
            await other.commit()

        # Released: the next prune takes it.
        assert await store.prune(time.time() + 60) == 1
        assert await store.get_run("r2") is None
        assert await store.load_steps("r2") == []
    finally:
        await store.close()
