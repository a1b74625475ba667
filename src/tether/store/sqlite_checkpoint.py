"""WAL checkpoints off the writer's path.

In WAL mode a commit appends pages to the ``-wal`` file; a *checkpoint* copies them back into
the database file and syncs it. SQLite's default runs one inside the commit that takes the
WAL past 1,000 pages, so every few hundred steps one commit also pays the copy and two
``fsync`` calls -- milliseconds on a quiet disk, tens of them on a busy one, in series with
the step that happened to commit then (measured on the sequential path: a median commit of
~10 µs, and the ~1 % of commits that checkpointed carrying a sixth to a third of the wall
time).

Here the store's writer asks for a checkpoint every `CHECKPOINT_EVERY` commits (about 1,000
pages on a sequential run, the default's interval) and one thread
per process runs it, a ``PASSIVE`` checkpoint on a connection of its own: it copies what
readers allow without blocking the writer, which keeps committing meanwhile (SQLite releases
the GIL while it works). The writer's own automatic checkpoint stays as a backstop, at
`BACKSTOP_PAGES`, for a process whose checkpoints cannot keep up. What a commit promises is
unchanged: it is durable once it is in the WAL, checkpointed or not.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from urllib.parse import quote

log = logging.getLogger("tether.store")

CHECKPOINT_EVERY = 300
"""Write commits between two checkpoint requests of one store. Measured on the sequential path
(alternated pairs): every 300 commits gave 3-22 % more steps/s than checkpoints inside the
commits; every 100 (three times the copies and ``fsync`` calls) and every 1,000 gave none."""
BACKSTOP_PAGES = 10_000
"""The writer's own ``wal_autocheckpoint`` (SQLite's default is 1,000 pages)."""


class Checkpointer:
    """One thread that checkpoints the files it is asked to, each once per request however
    many requests arrive while it is busy. It never creates a file (a store removed since it
    asked is skipped) and never raises."""

    def __init__(self) -> None:
        self._pending: dict[str, None] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def request(self, path: str) -> None:
        with self._cond:
            self._pending[path] = None
            if self._thread is None or not self._thread.is_alive():  # a fork has none
                self._thread = threading.Thread(
                    target=self._serve, name="tether-sqlite-checkpoint", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                path = next(iter(self._pending))
                del self._pending[path]
            try:
                checkpoint(path)
            except Exception as exc:  # a file removed or locked meanwhile: the next request
                log.debug("checkpoint of %s skipped: %s", path, exc)


def checkpoint(path: str) -> tuple[int, int, int]:
    """A ``PASSIVE`` checkpoint of the SQLite file at `path`: ``(busy, wal pages, pages
    checkpointed)``. Opens the file read-write without creating it."""
    uri = f"file:{quote(os.path.abspath(path))}?mode=rw"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[0]), int(row[1]), int(row[2])
    finally:
        conn.close()


CHECKPOINTS = Checkpointer()
"""The process's checkpoint thread, shared by its SQLite stores."""
