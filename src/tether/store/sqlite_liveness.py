"""Worker liveness on one SQLite host: a lock file per owner that the kernel releases with the
process (see "Liveness" in `tether.store.base`).

An owner holding liveness keeps an exclusive ``flock`` on ``.<db>.workers/<hash>.lock`` (a
hidden folder next to the database; the file holds the owner's name) from before its first claim until it stops. A claimer that can
take that lock knows the process that held it is gone — killed, crashed, its host rebooted —
and may take over its runs at once. A paused (SIGSTOPped) or slow process still holds its lock.
The file appears under its final name already locked (it is locked under a temporary name and
renamed), so no claimer ever sees it unlocked while its owner lives. A missing file proves
nothing: such an owner is only taken over when its lease expires.

``flock`` locks belong to an open file, not a process, so a claimer in the same process as the
owner sees the lock too. Files of owners dead for an hour are swept when a worker starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterable

SWEEP_AFTER = 3600.0
"""Seconds after which a lock file nobody holds is deleted by a starting worker."""


class LockFiles:
    """The liveness lock files next to one SQLite database."""

    def __init__(self, db_path: str) -> None:
        # Hidden, next to the database (the locks must live on the host that has the file).
        # The resolved path: workers that reach one file by different names (a symlink) must
        # share one folder, or none sees the others' locks and a dead one waits out its lease.
        path = os.path.realpath(db_path)
        self.folder = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.workers")
        self._held: dict[str, int] = {}

    def path(self, owner: str) -> str:
        digest = hashlib.sha256(owner.encode()).hexdigest()[:24]
        return os.path.join(self.folder, f"{digest}.lock")

    def hold(self, owner: str) -> bool:
        """Lock `owner`'s file until `drop` or the process ends; False if it cannot."""
        if owner in self._held:
            return True
        try:
            os.makedirs(self.folder, exist_ok=True)
            self._sweep()
            temporary = os.path.join(self.folder, f".{os.getpid()}.{time.monotonic_ns()}.tmp")
            fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, owner.encode())
            os.rename(temporary, self.path(owner))
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            return False
        os.set_inheritable(fd, False)
        self._held[owner] = fd
        return True

    def drop(self, owner: str) -> None:
        """Delete and unlock `owner`'s file (a graceful stop)."""
        fd = self._held.pop(owner, None)
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path(owner))
        os.close(fd)

    def dead(self, owners: Iterable[str]) -> set[str]:
        """The owners among `owners` whose lock file exists and is not locked: their process is
        gone."""
        found: set[str] = set()
        for owner in owners:
            if owner in self._held:
                continue
            try:
                fd = os.open(self.path(owner), os.O_RDWR)
            except OSError:
                continue  # no file: nothing is known about this owner
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # held: the owner lives
            finally:
                os.close(fd)  # closing releases a lock we took
            found.add(owner)
        return found

    def close(self) -> None:
        for owner in list(self._held):
            self.drop(owner)

    def _sweep(self) -> None:
        cutoff = time.time() - SWEEP_AFTER
        with contextlib.suppress(OSError), os.scandir(self.folder) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime >= cutoff:
                        continue
                    fd = os.open(entry.path, os.O_RDWR)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        os.unlink(entry.path)
                    finally:
                        os.close(fd)
