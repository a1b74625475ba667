"""A paused worker that lost its leases cannot write (real processes, PostgreSQL).

Worker A holds four runs, each inside a step that waits on a gate file. We SIGSTOP A past its
lease; worker B takes the four runs over and enters the same steps, where it stays (its gate
is closed). Then we open A's gate only and SIGCONT it: A finishes the four steps together and
tries to journal them (one group-committed statement, or several) while the runs are
`running` under B. Only the fencing token can refuse those writes: the journal must show none
of A's late results, A must drop the runs and start nothing more, and once B is released the
journal holds B's outcomes.

What this does not promise: A did run those steps' bodies a second time (at-least-once, see
docs/operations.md); an outside system needs the step's idempotency key to apply them once.
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
RUNS = 4


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_schema_url() as url:
        prepare(url)
        yield url


def test_paused_worker_past_its_lease_cannot_write(pg_url: str, tmp_path: Path) -> None:
    url = pg_url
    gate = tmp_path / "gate"
    client = tether.App(url)

    def executions(seq: int) -> list[tuple[str, int]]:
        return query(
            url, "SELECT run_id, worker FROM executions WHERE seq = %s ORDER BY id", (seq,)
        )

    def journal() -> list[tuple[str, int, int]]:
        rows = query(url, "SELECT run_id, seq, output FROM steps ORDER BY run_id, seq")
        return [(run_id, seq, int(out)) for run_id, seq, out in rows]

    try:
        env = {"PG_APP_LEASE": "1", "PG_APP_CONCURRENCY": str(RUNS)}
        with workers(url, tmp_path, **env) as pool:
            ids = {
                client.start("tagged_chain", {"steps": 3, "gate": str(gate), "gate_at": 1}).id
                for _ in range(RUNS)
            }
            a = pool.start()
            wait_until(lambda: len(executions(2)) == RUNS, 60, "worker A to enter step #2 x4")
            os.kill(a.pid, signal.SIGSTOP)
            try:
                b = pool.start()
                wait_until(
                    lambda: len(executions(2)) == 2 * RUNS, 60, "worker B to take step #2 over"
                )
                owners = query(url, "SELECT status, lease_owner FROM runs")
                assert all(
                    status == "running" and f"-{b.pid}:" in owner for status, owner in owners
                ), owners
                Path(f"{gate}.{a.pid}").touch()  # A's steps may finish; B's stay inside
            finally:
                os.kill(a.pid, signal.SIGCONT)

            def a_done() -> bool:
                # Either A drops every run, or (a broken fence) its results reach the journal.
                return pool.log(a).count("lease lost") >= RUNS or any(
                    seq >= 2 for _, seq, _ in journal()
                )

            wait_until(a_done, 60, "worker A to drop its runs or journal step #2")
            during = journal()
            assert [(seq, pid) for _, seq, pid in during] == [(1, a.pid)] * RUNS, (
                "worker A's late writes reached the journal while B held the runs", during
            )
            a_log = pool.log(a)
            assert all(f"run {run_id}: lease lost" in a_log for run_id in ids), a_log[-3000:]
            assert executions(3) == [], "worker A started step #3 after losing its leases"

            gate.touch()
            wait_until(
                lambda: query(url, "SELECT count(*) FROM runs WHERE status = 'succeeded'")[0][0]
                == RUNS,
                60,
                "the runs to succeed",
            )
            final = journal()
            assert a.poll() is None, "worker A should carry on, not crash"

        # Step #1 is A's, steps #2 and #3 are B's: one journal entry per step.
        assert sorted(final) == sorted(
            (run_id, seq, pid)
            for run_id in ids
            for seq, pid in ((1, a.pid), (2, b.pid), (3, b.pid))
        )
        for run_id in ids:
            assert client.get_run(run_id).output == [a.pid, b.pid, b.pid]
        # The step bodies: #1 and #3 ran once; #2 twice (A's paused run of it, then B's).
        rows = query(url, "SELECT run_id, seq, worker, journaled FROM executions ORDER BY id")
        assert not [r for r in rows if r[3]], "a journaled step ran again"
        by_step: dict[tuple[str, int], list[int]] = {}
        for run_id, seq, worker, _ in rows:
            by_step.setdefault((run_id, seq), []).append(worker)
        assert by_step == {
            (run_id, seq): workers_
            for run_id in ids
            for seq, workers_ in ((1, [a.pid]), (2, [a.pid, b.pid]), (3, [b.pid]))
        }
    finally:
        client.close()
