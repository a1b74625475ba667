"""PostgreSQL for tests: a fresh schema per test on $TETHER_TEST_POSTGRES (CI: the local server).

Skips with instructions when no server is reachable outside CI; in CI (``CI`` set) an
unreachable server is an error, because the PostgreSQL cases must run there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_base_url() -> str:
    return os.environ.get("TETHER_TEST_POSTGRES", DEFAULT_URL)


@contextlib.contextmanager
def postgres_schema_url() -> Iterator[str]:
    # Implemented with the PostgreSQL store (issue 3).
    pytest.skip(
        "PostgreSQL store not built yet; set TETHER_TEST_POSTGRES=postgresql://… to run "
        "the PostgreSQL cases"
    )
    yield ""
