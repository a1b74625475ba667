"""PostgreSQL for tests: a fresh schema per test on $TETHER_TEST_POSTGRES (CI: the local server).

Skips with instructions when no server is reachable outside CI; in CI (``CI`` set) an
unreachable server is an error, because the PostgreSQL cases must run there.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
_reachable: bool | None = None
_why = ""


_schemas_made = 0

CATALOG = ("pg_attribute", "pg_depend", "pg_class", "pg_index", "pg_type", "pg_constraint",
           "pg_attrdef", "pg_sequence", "pg_namespace")
"""The catalog tables a test schema's tables, indexes and sequences add rows to."""


def schemas_made() -> int:
    return _schemas_made


def add_schemas_made(count: int) -> None:
    """Count schemas another process made (a pytest-xdist worker), so `vacuum_catalog` runs."""
    global _schemas_made
    _schemas_made += count


def vacuum_catalog() -> None:
    """Reclaim the catalog rows this run's schemas left dead. Every test schema adds thousands
    (its tables, columns, indexes), dead once it is dropped; on a server with autovacuum off —
    CI's machine runs one — they are never reclaimed, and every later migration, so every later
    PostgreSQL test, gets slower (the catalog had grown to 0.6 GB). Called once per run: by the
    pytest-xdist controller after all its workers (tests/conftest.py)."""
    if not _schemas_made:
        return
    import psycopg

    with psycopg.connect(postgres_base_url(), autocommit=True) as conn:
        conn.execute(("VACUUM " + ", ".join(f"pg_catalog.{t}" for t in CATALOG)).encode())


def postgres_base_url() -> str:
    return os.environ.get("TETHER_TEST_POSTGRES", DEFAULT_URL)


def with_search_path(url: str, schema: str) -> str:
    """`url` with libpq ``options=-csearch_path=<schema>`` (replacing any given)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def _require_server() -> None:
    global _reachable, _why
    if _reachable is None:
        try:
            import psycopg

            with psycopg.connect(postgres_base_url(), connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _reachable = True
        except Exception as exc:  # no driver, no server, bad credentials: all mean "not here"
            _reachable, _why = False, f"{type(exc).__name__}: {exc}".strip()
    if not _reachable:
        message = (
            f"no PostgreSQL reachable at {postgres_base_url()} ({_why}); set "
            "TETHER_TEST_POSTGRES=postgresql://user@host:5432/db to run the PostgreSQL cases"
        )
        if os.environ.get("CI"):
            pytest.fail(message + " — CI must run them", pytrace=False)
        pytest.skip(message)


@contextlib.contextmanager
def postgres_schema_url() -> Iterator[str]:
    """A URL whose search_path is a new, empty schema; the schema is dropped afterwards."""
    _require_server()
    import psycopg

    global _schemas_made
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_base_url(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    _schemas_made += 1
    try:
        yield with_search_path(postgres_base_url(), schema)
    finally:
        with psycopg.connect(postgres_base_url(), autocommit=True) as conn:
            # Sessions a test left behind (killed workers) would block the drop.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND query LIKE %s",
                (f"%{schema}%",),
            )
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def sessions(application_name: str) -> int:
    """How many server sessions carry `application_name` (tagged in a test's URL)."""
    import psycopg

    with psycopg.connect(postgres_base_url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    return int(row[0]) if row else 0
