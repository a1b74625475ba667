"""The SQLite liveness lock files (`tether.store.sqlite_liveness.LockFiles`): every worker of one
database file finds the same folder, whatever name it reached the file by."""

from __future__ import annotations

import os
from pathlib import Path

from tether.store.sqlite_liveness import LockFiles

OWNER = "a:1~live"


def test_a_worker_reaching_the_file_through_a_symlink_is_seen_dead(tmp_path: Path) -> None:
    # Two workers on one database: one was given a symlink to it (a deploy's "current" link,
    # a volume mounted under another name). When it dies, the other must see its lock file
    # released — not look in a folder of its own name and wait a whole lease.
    real = tmp_path / "tether.db"
    real.touch()
    alias = tmp_path / "alias.db"
    alias.symlink_to(real)
    holder, claimer = LockFiles(str(alias)), LockFiles(str(real))
    assert holder.hold(OWNER)
    assert claimer.dead([OWNER]) == set()  # alive: its lock is held
    os.close(holder._held.pop(OWNER))  # the process dies: the kernel drops the flock, the file stays
    assert claimer.dead([OWNER]) == {OWNER}
