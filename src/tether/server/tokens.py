"""Principals over HTTP (admin role): list them, create one (its token is in the answer, once),
revoke one. The CLI twin is `tether tokens`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from tether.access.principals import create_principal, list_principals, revoke_principal
from tether.errors import UserError
from tether.server.auth import note, principal_of, role
from tether.server.errors import ApiError
from tether.server.rendering import tether_app_of
from tether.store.base import PrincipalRecord

router = APIRouter(prefix="/api/tokens", tags=["tokens"])


class CreateToken(BaseModel):
    """Body of ``POST /api/tokens``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="A user name or SSO email.")
    roles: list[str] = Field(min_length=1, max_length=4,
                             description="viewer, operator, reviewer and/or admin.")
    categories: list[str] | None = Field(
        default=None, max_length=100, description="Risk categories a reviewer may decide."
    )


def _when(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat()


def principal_json(record: PrincipalRecord) -> dict[str, Any]:
    """A principal as the API shows it (no secret: the store has none)."""
    return {
        "name": record.name,
        "roles": record.roles,
        "categories": record.categories,
        "created_at": _when(record.created_at),
        "created_by": record.created_by,
        "revoked_at": _when(record.revoked_at),
        "active": record.revoked_at is None,
    }


@router.get("", **role("admin"))
async def tokens(request: Request) -> dict[str, Any]:
    """Every principal with its roles (never a token)."""
    found = await list_principals(tether_app_of(request).store)
    return {"principals": [principal_json(p) for p in found]}


@router.post("", status_code=201, **role("admin", "token.create"))
async def create(request: Request, body: CreateToken) -> JSONResponse:
    """Create a principal; the answer's ``token`` is shown this once."""
    note(request, target=body.name, roles=body.roles, categories=body.categories)
    try:
        record, token = await create_principal(
            tether_app_of(request).store, body.name, body.roles,
            categories=body.categories, created_by=principal_of(request).name,
        )
    except UserError as exc:
        status = 409 if "already exists" in str(exc) else 422
        raise ApiError(status, str(exc), type="ValidationError") from exc
    return JSONResponse({"token": token, **principal_json(record)}, status_code=201)


@router.post("/{name}/revoke", **role("admin", "token.revoke"))
async def revoke(request: Request, name: str) -> dict[str, Any]:
    """Revoke the principal's token: its requests and sessions are refused from now on."""
    store = tether_app_of(request).store
    try:
        await revoke_principal(store, name)
    except UserError as exc:
        raise ApiError(404, str(exc), type="UnknownPrincipal") from exc
    record = await store.get_principal(name)
    assert record is not None
    return principal_json(record)
