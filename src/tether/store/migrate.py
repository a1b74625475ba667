"""Schema migrations: numbered SQL files per dialect (`migrations/sqlite`, `migrations/postgres`),
read here for both stores; SQLite's are applied here too (PostgreSQL's by `PostgresStore`).

**Which code may use a store.** Most migrations are additive: code that does not know them
keeps working on the migrated store, so old and new workers can share it during a rolling
upgrade. A migration after which older code would do harm (it would write rows the new code
misreads, or ignore rows the new code counts on) says so in its leading comment::

    -- requires-code: 0031

meaning "code that does not know migration 0031 must not use a store this was applied to".
Applying it records the requirement in the store (``schema_compat``, migration 0028), so a
process whose code knows fewer migrations finds it there — it has no file to read — and
refuses to open the store (`SchemaTooNew`) instead of writing to it. A store with only
additive migrations it does not know opens as before.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

from tether._version import __version__
from tether.errors import SchemaTooNew, StoreError

COMPAT_TABLE = 28
"""The migration that creates ``schema_compat``; stores below it record no requirement."""

_REQUIRES = re.compile(r"^--\s*requires-code:\s*(\d+)\s*$", re.MULTILINE)


def migration_files(dialect: str) -> list[tuple[int, str, str]]:
    """``(number, name, sql)`` for every numbered migration of a dialect, in order."""
    folder = resources.files("tether.store") / "migrations" / dialect
    found: list[tuple[int, str, str]] = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def required_code(sql: str) -> int | None:
    """The ``-- requires-code: NNNN`` a migration declares, if any (see the module docstring)."""
    found = _REQUIRES.search(sql)
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class Requirement:
    """The strictest requirement recorded in a store: the migration that made it."""

    version: int
    name: str
    requires: int
    applied_by: str


def too_new(store: str, known: int, found: Requirement | None) -> None:
    """Raise `SchemaTooNew` if the store's recorded requirement is more than code that knows
    migrations up to `known` can meet."""
    if found is None or found.requires <= known:
        return
    raise SchemaTooNew(
        f"{store} needs newer tether: its migration {found.name} (applied by tether "
        f"{found.applied_by}) requires code that knows migration {found.requires:04d}, and this "
        f"tether ({__version__}) knows migrations up to {known:04d}; upgrade tether on this host "
        f"(to {found.applied_by} or later) — older code must not use this store"
    )


def compat_rows(applied: list[tuple[int, str, str]]) -> list[tuple[int, str, int, str]]:
    """``schema_compat`` rows for the migrations just applied that declare a requirement."""
    rows: list[tuple[int, str, int, str]] = []
    for number, name, sql in applied:
        requires = required_code(sql)
        if requires is not None:
            rows.append((number, name, requires, __version__))
    return rows


REQUIREMENT_SQL = (
    "SELECT version, name, requires, applied_by FROM schema_compat "
    "ORDER BY requires DESC, version DESC LIMIT 1"
)


def sqlite_requirement(conn: sqlite3.Connection) -> Requirement | None:
    """The strictest requirement a migrated SQLite store records (read by running workers, which
    a newer tether may have migrated the store under)."""
    row = conn.execute(REQUIREMENT_SQL).fetchone()
    return Requirement(*row) if row else None


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


def migrate_sqlite(conn: sqlite3.Connection, store: str = "this SQLite store") -> int:
    """Apply the SQLite migrations the file has not seen, in one write transaction; refuse
    (`SchemaTooNew`) a file whose migrations require newer code than this. Returns the last
    migration this code knows."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        known = _migrate(conn, store)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return known


def _migrate(conn: sqlite3.Connection, store: str) -> int:
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    files = migration_files("sqlite")
    known = files[-1][0]
    if current > known and current >= COMPAT_TABLE:
        too_new(store, known, sqlite_requirement(conn))
    pending = [m for m in files if m[0] > current]
    if not pending:
        return known
    applied: list[tuple[int, str, str]] = []
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
        applied.append((number, name, sql))
    rows = compat_rows(applied)
    if rows and conn.execute("PRAGMA user_version").fetchone()[0] >= COMPAT_TABLE:
        conn.executemany(
            "INSERT OR IGNORE INTO schema_compat (version, name, requires, applied_by) "
            "VALUES (?, ?, ?, ?)", rows)
    return known


