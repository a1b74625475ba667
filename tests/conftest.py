"""Shared fixtures.

* `sqlite_url`: a fresh SQLite file per test.
* `store_url`: parametrised over every backend (``sqlite`` and ``postgres``); the PostgreSQL
  case uses a fresh schema per test and skips, saying how to enable it, when no server is
  reachable (see tests/pg.py).
* Real model providers are blocked: tests use tether's offline models or the local fake
  provider server, never the network.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import postgres_schema_url, vacuum_catalog

# No test may reach a real model provider: any key in the environment is removed, and the
# OpenAI client's default host is pointed at a closed local port.
for _var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY",
             "GROQ_API_KEY", "MISTRAL_API_KEY", "TETHER_MODEL", "TETHER_STORE"):
    os.environ.pop(_var, None)
os.environ["OPENAI_BASE_URL"] = "http://127.0.0.1:9/v1"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # The PostgreSQL catalog rows this run's test schemas left dead (see `vacuum_catalog`).
    try:
        vacuum_catalog()
    except Exception as exc:  # housekeeping: never what decides a run
        print(f"\nnote: could not VACUUM the PostgreSQL catalog after the tests: {exc}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tether.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tether.db'}"
    else:
        with postgres_schema_url() as url:
            yield url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
