"""Give memory back after bursts: a worker whose runs went to wait holds none of them, but the
C heap (freed blocks glibc keeps) and SQLite's page caches stay as large as the burst made them.

`release` is called by an idle worker at most once per `RELEASE_EVERY` seconds, only after it
executed something since the last time: it asks the store to shrink its caches (SQLite
``PRAGMA shrink_memory``) and glibc to return free heap pages to the OS (``malloc_trim``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("tether.worker")

RELEASE_EVERY = 2.0
"""Seconds between two releases of an idle worker."""


def _malloc_trim() -> Callable[[int], Any] | None:
    with contextlib.suppress(Exception):
        name = ctypes.util.find_library("c")
        if name:
            trim = ctypes.CDLL(name).malloc_trim
            trim.argtypes = [ctypes.c_size_t]
            return trim  # type: ignore[no-any-return]
    return None


_TRIM = _malloc_trim()


async def release(store: object) -> None:
    """Shrink the store's caches and return free C heap to the OS; failures are ignored."""
    shrink = getattr(store, "release_memory", None)  # optional: stores that cache pages
    if shrink is not None:
        try:
            await shrink()
        except Exception as exc:
            log.debug("store memory release failed (%s)", exc)
    if _TRIM is not None:
        with contextlib.suppress(Exception):
            _TRIM(0)
