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
import random
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import pg
from tests.pg import postgres_schema_url, vacuum_catalog

# No test may reach a real model provider: any key in the environment is removed, and the
# OpenAI client's default host is pointed at a closed local port.
for _var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY",
             "GROQ_API_KEY", "MISTRAL_API_KEY", "TETHER_MODEL", "TETHER_STORE"):
    os.environ.pop(_var, None)
os.environ["OPENAI_BASE_URL"] = "http://127.0.0.1:9/v1"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # The PostgreSQL catalog rows this run's test schemas left dead (see `vacuum_catalog`).
    # Under pytest-xdist (`./dev test`) a worker only reports its count; the controller, whose
    # session ends after every worker's, runs the VACUUM once.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["pg_schemas_made"] = pg.schemas_made()
        return
    try:
        vacuum_catalog()
    except Exception as exc:  # housekeeping: never what decides a run
        print(f"\nnote: could not VACUUM the PostgreSQL catalog after the tests: {exc}")


E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Under pytest-xdist (`./dev test`, `--dist loadgroup`) the end-to-end tests share one
    # worker, one after another as in a serial run: each drives worker processes, servers,
    # browsers or a PostgreSQL cluster of its own and waits on their leases and deadlines, and
    # two at once on a 2-core machine made some of those waits run out. The other worker runs
    # tests/integration and tests/unit beside them.
    for item in items:
        if item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.xdist_group("e2e"))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist, on the controller: a worker finished; count the schemas it made."""
    pg.add_schemas_made(int(getattr(node, "workeroutput", {}).get("pg_schemas_made", 0)))


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


_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_PORT_BAND = 2000
_port_offset = random.randrange(_PORT_BAND)


def free_port() -> int:
    """A loopback port free now, for a server a test starts. Serially, the kernel's choice.
    Under pytest-xdist, worker gwN takes ports from its own band below the kernel's ephemeral
    range (20000 + 2000 N ...), so two workers never pick the same port between the check here
    and their servers' bind, and no outgoing connection's ephemeral port takes it either."""
    global _port_offset
    if not _WORKER.startswith("gw"):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    base = 20000 + _PORT_BAND * (int(_WORKER[2:]) % 6)
    for _ in range(_PORT_BAND):
        _port_offset = (_port_offset + 1) % _PORT_BAND
        port = base + _port_offset
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {base}..{base + _PORT_BAND - 1}")
