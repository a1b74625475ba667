"""SQLite statements of the interfaces layer: principals and the audit trail (the engine's are in
`sqlite_sql`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from tether.store.base import AuditRecord, PrincipalRecord

_PRINCIPAL_COLUMNS = "name, roles, categories, token_hash, created_at, created_by, revoked_at"
_AUDIT_COLUMNS = "at, principal, action, target, outcome, detail, via, id"


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def principal_from_row(row: Sequence[Any]) -> PrincipalRecord:
    return PrincipalRecord(
        name=row[0], roles=_loads(row[1]) or [], categories=_loads(row[2]), token_hash=row[3],
        created_at=row[4], created_by=row[5], revoked_at=row[6],
    )


def audit_from_row(row: Sequence[Any]) -> AuditRecord:
    return AuditRecord(
        at=row[0], principal=row[1], action=row[2], target=row[3], outcome=row[4],
        detail=_loads(row[5]), via=row[6], id=row[7],
    )


def add_principal(conn: sqlite3.Connection, p: PrincipalRecord) -> bool:
    # A revoked principal of the same name gives way; an active one is kept (nothing written).
    conn.execute("DELETE FROM principals WHERE name = ? AND revoked_at IS NOT NULL", (p.name,))
    return conn.execute(
        f"INSERT INTO principals ({_PRINCIPAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (name) DO NOTHING",
        (p.name, _dumps(p.roles), _dumps(p.categories), p.token_hash, p.created_at,
         p.created_by, p.revoked_at),
    ).rowcount == 1


def get_principal(conn: sqlite3.Connection, name: str) -> PrincipalRecord | None:
    row = conn.execute(
        f"SELECT {_PRINCIPAL_COLUMNS} FROM principals WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else principal_from_row(row)


def principal_by_token(conn: sqlite3.Connection, token_hash: str) -> PrincipalRecord | None:
    row = conn.execute(
        f"SELECT {_PRINCIPAL_COLUMNS} FROM principals WHERE token_hash = ? "
        "AND revoked_at IS NULL",
        (token_hash,),
    ).fetchone()
    return None if row is None else principal_from_row(row)


def list_principals(conn: sqlite3.Connection) -> list[PrincipalRecord]:
    rows = conn.execute(f"SELECT {_PRINCIPAL_COLUMNS} FROM principals ORDER BY name")
    return [principal_from_row(row) for row in rows]


def has_principals(conn: sqlite3.Connection) -> bool:
    return conn.execute(
        "SELECT 1 FROM principals WHERE revoked_at IS NULL LIMIT 1"
    ).fetchone() is not None


def revoke_principal(conn: sqlite3.Connection, name: str, revoked_at: float) -> bool:
    return conn.execute(
        "UPDATE principals SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
        (revoked_at, name),
    ).rowcount == 1


def add_audit(conn: sqlite3.Connection, e: AuditRecord) -> AuditRecord:
    row = conn.execute(
        "INSERT INTO audit (at, principal, action, target, outcome, detail, via) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (e.at, e.principal, e.action, e.target, e.outcome, _dumps(e.detail), e.via),
    ).fetchone()
    return AuditRecord(e.at, e.principal, e.action, e.target, e.outcome, e.detail, e.via, row[0])


def list_audit(
    conn: sqlite3.Connection,
    filters: tuple[tuple[str, str | None], ...],
    since: float | None,
    limit: int,
) -> list[AuditRecord]:
    where: list[str] = []
    params: list[Any] = []
    for column, value in filters:  # column names are fixed by the caller, values bound
        if value is None:
            continue
        if value.endswith("*"):
            where.append(f"substr({column}, 1, ?) = ?")
            params.extend([len(value) - 1, value[:-1]])
        else:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("at >= ?")
        params.append(since)
    sql = f"SELECT {_AUDIT_COLUMNS} FROM audit"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    return [audit_from_row(row) for row in conn.execute(sql, params)]


def prune_audit(conn: sqlite3.Connection, before: float) -> int:
    return conn.execute("DELETE FROM audit WHERE at < ?", (before,)).rowcount
