"""A paused worker that lost its lease cannot write (real processes, PostgreSQL).

Worker A runs a run of slow steps whose journaled result is the pid of the process that ran
them. We SIGSTOP A in the middle of a step, past its lease; worker B takes the run over; then
we SIGCONT A while B is still working. A finishes the step it was in and tries to journal it:
the write is fenced off, A drops the run, and the journal holds B's results only, once each.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
from tests.e2e.pg_procs import prepare, query, wait_until, workers
from tests.pg import postgres_schema_url

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_schema_url() as url:
        prepare(url)
        yield url


def test_paused_worker_past_its_lease_cannot_write(pg_url: str, tmp_path: Path) -> None:
    url = pg_url
    client = tether.App(url)
    try:
        env = {"PG_APP_LEASE": "1", "PG_APP_TAGGED_SECONDS": "0.6", "PG_APP_CONCURRENCY": "1"}
        with workers(url, tmp_path, **env) as pool:
            a = pool.start()
            run_id = client.start("tagged_chain", {"steps": 8}).id

            def journal() -> list[tuple[int, int]]:
                rows = query(url, "SELECT seq, output FROM steps WHERE run_id = %s ORDER BY seq", (run_id,))
                return [(seq, int(out)) for seq, out in rows]

            wait_until(lambda: len(journal()) >= 2, 60, "worker A to journal two steps")
            # A is now inside step 3 (it journaled 2 and each step takes 0.6 s).
            os.kill(a.pid, signal.SIGSTOP)
            stopped_at = len(journal())
            b = pool.start()

            def taken_over() -> bool:
                rows = query(url, "SELECT recoveries, lease_owner FROM runs WHERE id = %s", (run_id,))
                return rows[0][0] >= 1 and rows[0][1] is not None

            wait_until(taken_over, 30, "worker B to take the run over")
            os.kill(a.pid, signal.SIGCONT)
            wait_until(
                lambda: query(url, "SELECT status FROM runs WHERE id = %s", (run_id,))[0][0]
                == "succeeded",
                60,
                "the run to succeed",
            )
            final = journal()
            a_log = pool.log(a)

        # One journal entry per step, no duplicates; every entry after the pause is B's.
        assert [seq for seq, _ in final] == list(range(1, 9))
        writers = [pid for _, pid in final]
        assert set(writers[:stopped_at]) == {a.pid}
        assert set(writers[stopped_at:]) == {b.pid}, (stopped_at, writers)
        # A did run the step it was paused in (its effect counted twice: A's and B's run of
        # it) but its journal write was rejected and it dropped the run.
        paused_key = f"{run_id}:{stopped_at + 1}"
        [(executions, first_worker)] = query(
            url, "SELECT executions, worker FROM effects WHERE key = %s", (paused_key,)
        )
        assert first_worker == a.pid
        assert executions == 2
        assert "lease lost" in a_log, a_log[-2000:]
        run = client.get_run(run_id)
        assert run.status == "succeeded"
        assert run.output == writers
    finally:
        client.close()
