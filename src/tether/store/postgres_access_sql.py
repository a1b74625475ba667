"""PostgreSQL statements of the interfaces layer: principals and the audit trail (the engine's
are in `postgres_sql`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tether.store.base import AuditRecord, PrincipalRecord
from tether.store.postgres_sql import Conn, dumps, loads

_PRINCIPAL_COLUMNS = "name, roles, categories, token_hash, created_at, created_by, revoked_at"
_AUDIT_COLUMNS = "at, principal, action, target, outcome, detail, via, id"


def principal_from_row(row: Sequence[Any]) -> PrincipalRecord:
    return PrincipalRecord(
        name=row[0], roles=loads(row[1]) or [], categories=loads(row[2]), token_hash=row[3],
        created_at=row[4], created_by=row[5], revoked_at=row[6],
    )


def audit_from_row(row: Sequence[Any]) -> AuditRecord:
    return AuditRecord(
        at=row[0], principal=row[1], action=row[2], target=row[3], outcome=row[4],
        detail=loads(row[5]), via=row[6], id=row[7],
    )


async def add_principal(conn: Conn, p: PrincipalRecord) -> bool:
    # A revoked principal of the same name gives way; an active one is kept (nothing written).
    await conn.execute(
        "DELETE FROM principals WHERE name = %s AND revoked_at IS NOT NULL", (p.name,)
    )
    cur = await conn.execute(
        f"INSERT INTO principals ({_PRINCIPAL_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (name) DO NOTHING RETURNING name",
        (p.name, dumps(p.roles), dumps(p.categories), p.token_hash, p.created_at,
         p.created_by, p.revoked_at),
    )
    if await cur.fetchone() is not None:
        return True
    # A retry after a lost commit acknowledgement finds its own row: same token, so done.
    current = await get_principal(conn, p.name)
    return current is not None and current.token_hash == p.token_hash


async def get_principal(conn: Conn, name: str) -> PrincipalRecord | None:
    cur = await conn.execute(
        f"SELECT {_PRINCIPAL_COLUMNS} FROM principals WHERE name = %s", (name,)
    )
    row = await cur.fetchone()
    return None if row is None else principal_from_row(row)


async def principal_by_token(conn: Conn, token_hash: str) -> PrincipalRecord | None:
    cur = await conn.execute(
        f"SELECT {_PRINCIPAL_COLUMNS} FROM principals WHERE token_hash = %s "
        "AND revoked_at IS NULL",
        (token_hash,),
    )
    row = await cur.fetchone()
    return None if row is None else principal_from_row(row)


async def list_principals(conn: Conn) -> list[PrincipalRecord]:
    cur = await conn.execute(f"SELECT {_PRINCIPAL_COLUMNS} FROM principals ORDER BY name")
    return [principal_from_row(row) for row in await cur.fetchall()]


async def has_principals(conn: Conn) -> bool:
    cur = await conn.execute("SELECT 1 FROM principals WHERE revoked_at IS NULL LIMIT 1")
    return await cur.fetchone() is not None


async def revoke_principal(conn: Conn, name: str, revoked_at: float) -> bool:
    cur = await conn.execute(
        "UPDATE principals SET revoked_at = %s WHERE name = %s AND revoked_at IS NULL "
        "RETURNING name",
        (revoked_at, name),
    )
    return await cur.fetchone() is not None


async def add_audit(conn: Conn, e: AuditRecord) -> AuditRecord:
    cur = await conn.execute(
        "INSERT INTO audit (at, principal, action, target, outcome, detail, via) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (e.at, e.principal, e.action, e.target, e.outcome, dumps(e.detail), e.via),
    )
    row = await cur.fetchone()
    assert row is not None
    return AuditRecord(e.at, e.principal, e.action, e.target, e.outcome, e.detail, e.via, row[0])


async def list_audit(
    conn: Conn,
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
            where.append(f"left({column}, %s) = %s")
            params.extend([len(value) - 1, value[:-1]])
        else:
            where.append(f"{column} = %s")
            params.append(value)
    if since is not None:
        where.append("at >= %s")
        params.append(since)
    text = f"SELECT {_AUDIT_COLUMNS} FROM audit"
    if where:
        text += " WHERE " + " AND ".join(where)
    text += " ORDER BY id DESC LIMIT %s"
    params.append(limit)
    cur = await conn.execute(text.encode(), params)  # composed from fixed fragments only
    return [audit_from_row(row) for row in await cur.fetchall()]


async def prune_audit(conn: Conn, before: float) -> int:
    cur = await conn.execute("DELETE FROM audit WHERE at < %s", (before,))
    return cur.rowcount
