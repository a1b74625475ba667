"""Stores: where runs, journals and mailboxes live. `open_store` picks one from a URL."""

from __future__ import annotations

import os

from tether.errors import UserError
from tether.store.base import Store

DEFAULT_URL = "sqlite:///tether.db"


def default_url() -> str:
    """``$TETHER_STORE``, else the embedded SQLite file ``tether.db`` in the working directory."""
    return os.environ.get("TETHER_STORE") or DEFAULT_URL


def open_store(url: str | None = None) -> Store:
    """Build the store for a URL (not yet connected; it connects on first use)."""
    url = url or default_url()
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from tether.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if scheme in ("postgresql", "postgres"):
        try:
            from tether.store.postgres import PostgresStore
        except ImportError as exc:  # psycopg is the `postgres` extra
            raise ImportError(
                "the PostgreSQL store needs psycopg 3: pip install 'tether[postgres]'"
            ) from exc
        return PostgresStore(url)
    raise UserError(
        f"unsupported store URL {url!r}: use sqlite:///path/to/file.db or "
        "postgresql://user@host:5432/db"
    )


__all__ = ["DEFAULT_URL", "Store", "default_url", "open_store"]
