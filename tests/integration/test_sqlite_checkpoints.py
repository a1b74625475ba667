"""WAL checkpoints run beside the SQLite store's writer, not inside its commits
(`tether.store.sqlite_checkpoint`), on a real file."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.sequence_app import sequence_app
from tether.store import sqlite_checkpoint
from tether.store.sqlite import SQLiteStore

_RUNS_PAST_TWO_REQUESTS = 2 * sqlite_checkpoint.CHECKPOINT_EVERY // 12 + 2
"""Runs of `sequence` (12 commits each: the start, 10 steps, the finish) that take a store's
writer past two checkpoint requests."""


def _wait_for(predicate: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def test_the_checkpoint_thread_copies_the_wal_while_the_writer_only_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, str, tuple[int, int, int]]] = []
    real = sqlite_checkpoint.checkpoint

    def recorded(path: str) -> tuple[int, int, int]:
        result = real(path)
        seen.append((threading.current_thread().name, path, result))
        return result

    monkeypatch.setattr(sqlite_checkpoint, "checkpoint", recorded)
    db = tmp_path / "runs.db"
    app = sequence_app(f"sqlite:///{db}")
    try:
        for _ in range(_RUNS_PAST_TWO_REQUESTS):
            assert app.run("sequence").status == "succeeded"
        store = app.store
        assert isinstance(store, SQLiteStore)
        writer, _ = store._ensure_open()  # pyright: ignore[reportPrivateUsage]
        # The writer's own checkpoints only beyond the backstop: its commits stay short.
        backstop = writer.call_sync(lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        assert backstop == sqlite_checkpoint.BACKSTOP_PAGES
        assert _wait_for(lambda: len(seen) >= 2)
        assert all(name == "tether-sqlite-checkpoint" and path == str(db) for name, path, _ in seen)
        assert any(copied > 0 for _, _, (_, _, copied) in seen)
        # What was checkpointed is in the database file itself: a reader that ignores the WAL
        # (immutable) sees the runs.
        copied = sqlite3.connect(f"file:{db}?immutable=1", uri=True)
        try:
            assert copied.execute("SELECT count(*) FROM runs").fetchone()[0] > 0
        finally:
            copied.close()
    finally:
        app.close()


def test_a_checkpoint_never_creates_a_file_that_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "removed.db"
    with pytest.raises(sqlite3.OperationalError):
        sqlite_checkpoint.checkpoint(str(missing))
    marker = tmp_path / "marker.db"
    sqlite3.connect(marker).close()
    visited = threading.Event()
    real = sqlite_checkpoint.checkpoint

    def watch(path: str) -> tuple[int, int, int]:
        if path == str(marker):
            visited.set()
        return real(path)

    monkeypatch.setattr(sqlite_checkpoint, "checkpoint", watch)
    sqlite_checkpoint.CHECKPOINTS.request(str(missing))  # never raises: the thread skips it
    sqlite_checkpoint.CHECKPOINTS.request(str(marker))  # served after it, in order
    assert visited.wait(10)
    assert not missing.exists()


def test_memory_stores_ask_for_no_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(sqlite_checkpoint.CHECKPOINTS, "request", asked.append)
    app = sequence_app("sqlite:///:memory:")
    try:
        for _ in range(12):
            assert app.run("sequence").status == "succeeded"
    finally:
        app.close()
    assert asked == []


def test_a_file_store_asks_every_checkpoint_every_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    monkeypatch.setattr(sqlite_checkpoint.CHECKPOINTS, "request", asked.append)
    db = tmp_path / "runs.db"
    app = sequence_app(f"sqlite:///{db}")
    try:
        app.run("sequence")  # opens the store (its migrations commit once)
        before = len(asked)
        for _ in range(_RUNS_PAST_TWO_REQUESTS):
            assert app.run("sequence").status == "succeeded"
    finally:
        app.close()
    assert 2 <= len(asked) - before <= 3
    assert set(asked) == {str(db)}
