"""Rolling upgrades: workers of two tether versions on one store at once, in separate
processes, on SQLite and PostgreSQL (docs/operations.md, "Upgrading").

* Old and new code sharing a store: the old code is tether as of `OLD_COMMITS`, taken from
  git history at test time. Runs queued, waiting for a signal and in the middle of a step carry
  on; an old worker killed mid-step has its run finished by a new one and the reverse; every
  run ends once, no completed step runs again, and the event streams read by this version
  are whole.
* A store migrated by a newer tether that declares older code unsafe: the newer code is this
  tree plus one migration (``-- requires-code``). A worker of this code already running stops
  and gives its runs back, and one started afterwards refuses, each with one line naming what
  the store needs; the newer worker finishes every run once.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tether
from tests.e2e.harness import (
    ROOT,
    Workers,
    check_exactly_once,
    client,
    process_env,
    read_ledger,
    wait_until,
    worker_pool,
)

APP = "tests.e2e.upgrade_app:app"
OLD_COMMITS = {
    "sqlite": "55dc6bd053d964defcce514d4f9f4efb04c5c890",
    "postgres": "b8d35254d4a3a7619fa99c78dce8fcb8d307c46a",
}
"""The old tether per store: main just before migration 0026 (SQLite at 0025, so 0026, 0027 and
0028 are new), and the merge just before 0027 (PostgreSQL at 0024, so 0027 and 0028 are new).
Neither has the schema guard: nothing stops them on a newer store. An old tether before 0024
must not share a store with this one (0024 says so; docs/operations.md, "Upgrading")."""
pytestmark = pytest.mark.timeout(240)
_archives: dict[str, Path] = {}


@pytest.fixture
def old_src(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The old tether's sources for this store, from this checkout's git history."""
    commit = OLD_COMMITS["sqlite" if store_url.startswith("sqlite") else "postgres"]
    if commit in _archives:
        return _archives[commit]
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
                           capture_output=True, check=False)
    if found.returncode != 0:
        pytest.skip(f"this checkout's git history has no commit {commit[:12]} (a shallow "
                    "clone?), where the rolling-upgrade test takes its old tether from; "
                    "`git fetch --unshallow` to run it")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "src/tether"],
                             capture_output=True, check=True).stdout
    dest = tmp_path_factory.mktemp("old-tether")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    _archives[commit] = dest / "src"
    return dest / "src"


def as_version(src: Path | None, store: str, script: str) -> Any:
    """Run `script` (with ``app``, a client App on `store`) under tether from `src`; returns
    what it prints, as JSON."""
    code = f"import json, tether\napp = tether.App({store!r})\n{script}\napp.close()\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=process_env(src=src),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def start_runs(src: Path | None, store: str, waiting: int, plain: int) -> list[str]:
    return as_version(src, store, (
        f"ids = [app.start('rolling', {{'wait': True}}).id for _ in range({waiting})]\n"
        f"ids += [app.start('rolling', {{}}).id for _ in range({plain})]\n"
        "print(json.dumps(ids))"))


def mid_step(app: tether.App, ledger: Path, pid: int) -> Callable[[], str | None]:
    """A predicate: the key of a step `pid` has started and not journaled, if any."""

    def find() -> str | None:
        for key, runs in read_ledger(ledger).items():
            if runs[-1].pid != pid:
                continue
            run_id, seq = key.rsplit(":", 1)
            journal = {s.seq: s.status for s in app.get_run(run_id).steps}
            if journal.get(int(seq)) != "completed":
                return key
        return None

    return find


def kill_inside_a_step(app: tether.App, workers: Workers, name: str, hold: Path) -> str:
    """SIGKILL worker `name` while it is inside a step that cannot end before the kill (the
    hold file keeps every step from ending); returns that step's key."""
    hold.touch()
    try:
        key = wait_until(mid_step(app, workers.ledger, workers.procs[name].pid), timeout=60,
                         what=f"{name} inside a step")
        workers.kill(name)
    finally:
        hold.unlink()
    return key


def finished_by(app: tether.App, key: str) -> int | None:
    """The pid whose result of step `key` is journaled, once it is."""
    run_id, seq = key.rsplit(":", 1)
    for step in app.get_run(run_id).steps:
        if step.seq == int(seq) and step.status == "completed":
            return int(step.output["pid"])
    return None


def signal_waiting(app: tether.App, ids: list[str], old_src: Path | None, store: str,
                   turn: list[int]) -> list[tether.RunInfo] | None:
    """Signal the runs waiting now, by the old and the new client in turn; all infos once
    every run has ended."""
    infos = [app.get_run(run_id) for run_id in ids]
    waiting = [info.id for info in infos if info.status == "waiting"]
    if waiting:
        turn[0] += 1
        if turn[0] % 2 and old_src is not None:
            as_version(old_src, store, f"for r in {waiting!r}: app.signal(r, 'go', 'old')")
        else:
            for run_id in waiting:
                app.signal(run_id, "go", "new")
    return infos if all(info.finished for info in infos) else None


def events(src: Path | None, store: str, ids: list[str]) -> dict[str, list[list[Any]]]:
    """Each run's event stream as `src`'s tether reads it: ``[id, kind, seq]``."""
    return as_version(src, store, (
        "try:\n    from tether.engine.handles import RunHandle\n"
        "except ImportError:\n    from tether.engine.app import RunHandle\n"
        f"print(json.dumps({{r: [[e.id, e.kind, e.seq] for e in "
        f"RunHandle(app, r).events(follow=False)] for r in {ids!r}}}))"))


def assert_stream_whole(info: tether.RunInfo, stream: list[list[Any]], reader: str) -> None:
    ids = [event[0] for event in stream]
    assert ids == sorted(set(ids)), f"{reader} reads {info.id}'s events out of order: {ids}"
    completed = sorted(seq for _, kind, seq in stream if kind == "step_completed")
    journaled = sorted(s.seq for s in info.steps if s.kind == "step")
    assert completed == journaled, (
        f"{reader} reads {info.id}'s steps completed at {completed}; the journal has {journaled}")
    assert stream[-1][1] == "finished", f"{reader}: {info.id}'s stream ends with {stream[-1]}"


def test_old_and_new_workers_share_a_store_and_take_over_each_others_runs(
    store_url: str, tmp_path: Path, old_src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = tmp_path / "ledger.txt"
    hold = tmp_path / "hold"
    monkeypatch.setenv("TETHER_E2E_HOLD", str(hold))
    app = client(store_url)
    try:
        with worker_pool(tmp_path, store_url) as workers:
            # The store as the old tether made it, with runs queued on it, one old worker.
            ids = start_runs(old_src, store_url, waiting=3, plain=3)
            old1 = workers.start("old1", app=APP, src=old_src, args=["--concurrency", "3"]).pid
            wait_until(mid_step(app, ledger, old1), timeout=60, what="old1 inside a step")
            # The new tether arrives: migrates the store under the running old worker.
            new1 = workers.start("new1", app=APP, args=["--concurrency", "3"]).pid
            ids += start_runs(None, store_url, waiting=3, plain=3)
            cut_old = kill_inside_a_step(app, workers, "old1", hold)
            assert wait_until(lambda: finished_by(app, cut_old), timeout=60,
                              what=f"step {cut_old}, cut on old1, journaled") == new1
            old2 = workers.start("old2", app=APP, src=old_src, args=["--concurrency", "3"]).pid
            # new1 may have stepped through all it could run by now (the rest waits for
            # signals): with every step held, fresh runs surely put it inside one.
            hold.touch()
            ids += start_runs(None, store_url, waiting=0, plain=6)
            cut_new = kill_inside_a_step(app, workers, "new1", hold)
            assert wait_until(lambda: finished_by(app, cut_new), timeout=60,
                              what=f"step {cut_new}, cut on new1, journaled") == old2
            workers.start("new2", app=APP, args=["--concurrency", "3"])
            turn = [0]
            infos = wait_until(lambda: signal_waiting(app, ids, old_src, store_url, turn),
                               timeout=120, what=f"all {len(ids)} runs to end")
        assert [info.status for info in infos] == ["succeeded"] * len(ids), [
            (info.id, info.status, info.error) for info in infos]
        runs = read_ledger(ledger)
        for info in infos:
            check_exactly_once(info, runs, workers.killed)
            assert info.output == {"steps": 6}
        for info, stream in zip(infos, events(None, store_url, ids).values(), strict=True):
            assert_stream_whole(info, stream, "this tether")
        for info, stream in zip(infos, events(old_src, store_url, ids).values(), strict=True):
            assert_stream_whole(info, stream, "the old tether")
    finally:
        app.close()


FUTURE_MIGRATION = """-- requires-code: 9001
-- A migration of a tether from the future, after which older code must not use the store.
CREATE TABLE future_rows (x integer);
"""


@pytest.fixture
def future_src(tmp_path: Path) -> Path:
    """This tree's tether with one migration more that declares older code unsafe."""
    dest = tmp_path / "future" / "src"
    shutil.copytree(ROOT / "src" / "tether", dest / "tether",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for dialect in ("sqlite", "postgres"):
        (dest / "tether" / "store" / "migrations" / dialect / "9001_future.sql").write_text(
            FUTURE_MIGRATION)
    (dest / "tether" / "_version.py").write_text('__version__ = "9.9.9"\n')
    return dest


def test_a_newer_tether_that_declares_older_code_unsafe_stops_the_old_workers(
    store_url: str, tmp_path: Path, future_src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = tmp_path / "ledger.txt"
    hold = tmp_path / "hold"
    monkeypatch.setenv("TETHER_E2E_HOLD", str(hold))
    app = client(store_url)
    try:
        with worker_pool(tmp_path, store_url) as workers:
            ids = start_runs(None, store_url, waiting=0, plain=4)
            today = workers.start("today", app=APP)
            hold.touch()  # no step ends until the worker of this code has stopped
            wait_until(mid_step(app, ledger, today.pid), timeout=60, what="today inside a step")
            workers.start("future", app=APP, src=future_src)
            # The running worker of this code notices within about a lease period, stops
            # with its runs given back, and says why.
            assert today.wait(timeout=60) == 2, workers.log("today")
            hold.unlink()
            workers.killed.add(today.pid)  # its steps in flight were cut
            said = workers.log("today")
            assert "9001_future.sql" in said and "tether 9.9.9" in said, said
            assert "upgrade tether on this host" in said, said
            # One started now refuses at once, and so does every command of this code.
            late = workers.start("late", app=APP)
            assert late.wait(timeout=60) == 2
            assert "needs newer tether" in workers.log("late")
            runs_cmd = subprocess.run(
                [sys.executable, "-m", "tether", "runs", "--store", store_url], cwd=ROOT,
                env=process_env(), capture_output=True, text=True, timeout=60, check=False)
            assert runs_cmd.returncode == 2
            assert len(runs_cmd.stderr.strip().splitlines()) == 1, runs_cmd.stderr
            assert "needs newer tether" in runs_cmd.stderr
            infos = wait_until(
                lambda: as_version(future_src, store_url, (
                    f"infos = [app.get_run(r) for r in {ids!r}]\n"
                    "print(json.dumps([i.status for i in infos]))"))
                == ["succeeded"] * 4, timeout=120, what="the newer worker to finish every run")
            assert infos
        # Read with the newer code (this code cannot open the store any more).
        steps = as_version(future_src, store_url, (
            f"print(json.dumps({{r: [[s.seq, s.kind, s.status, s.output] for s in "
            f"app.get_run(r).steps] for r in {ids!r}}}))"))
        runs = read_ledger(ledger)
        for run_id, journal in steps.items():
            check_exactly_once(journaled(run_id, journal), runs, workers.killed)
    finally:
        app.close()


def journaled(run_id: str, journal: list[list[Any]]) -> Any:
    """A stand-in for RunInfo with what `check_exactly_once` reads."""
    from types import SimpleNamespace

    return SimpleNamespace(id=run_id, steps=[
        SimpleNamespace(seq=seq, kind=kind, status=status, output=output, name="work")
        for seq, kind, status, output in journal])
