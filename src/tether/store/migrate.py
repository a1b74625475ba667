"""Schema migrations: numbered SQL files per dialect (`migrations/sqlite`, `migrations/postgres`),
read here for both stores; SQLite's are applied here too (PostgreSQL's by `PostgresStore`)."""

from __future__ import annotations

import sqlite3
from importlib import resources

from tether.errors import StoreError


def migration_files(dialect: str) -> list[tuple[int, str, str]]:
    """``(number, name, sql)`` for every numbered migration of a dialect, in order."""
    folder = resources.files("tether.store") / "migrations" / dialect
    found: list[tuple[int, str, str]] = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def _split_statements(sql: str) -> list[str]:
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer)
            buffer = ""
    if buffer.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in buffer.splitlines()
    ):
        raise StoreError("migration ends with an incomplete SQL statement")
    return statements


def migrate_sqlite(conn: sqlite3.Connection) -> None:
    """Apply the SQLite migrations the file has not seen, in one write transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        _migrate(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _migrate(conn: sqlite3.Connection) -> None:
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    pending = [m for m in migration_files("sqlite") if m[0] > current]
    if not pending:
        return
    for number, name, sql in pending:
        # Re-read inside the transaction: another process may have migrated meanwhile.
        if conn.execute("PRAGMA user_version").fetchone()[0] >= number:
            continue
        try:
            for statement in _split_statements(sql):
                conn.execute(statement)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite migration {name} failed: {exc}") from exc
        conn.execute(f"PRAGMA user_version = {number}")


