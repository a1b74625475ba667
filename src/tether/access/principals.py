"""Principals: named identities with roles and a bearer token (stored hashed).

A token is 32 random bytes (``tether_…``); it is shown once when created. The store keeps only
its SHA-256, which is enough for a secret of that entropy (no password stretching needed) and
lets a token be looked up by its hash in one indexed query.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import os
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tether.errors import UserError
from tether.store.base import ROLES, PrincipalRecord, Store

TOKEN_PREFIX = "tether_"

GRANTS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"viewer"}),
    "operator": frozenset({"viewer", "operator"}),
    "reviewer": frozenset({"viewer", "reviewer"}),
    "admin": frozenset(ROLES),
}
"""What each role may do, as the roles it implies (an admin may do everything)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request (or command) acts as."""

    name: str
    roles: frozenset[str]
    """The roles granted, each with what it implies (see `GRANTS`)."""
    categories: frozenset[str] | None = None
    """Risk categories this principal may decide as a reviewer; ``None``: all."""
    via: str = "token"
    """How it was established: ``token``, ``session``, ``sso`` or ``local`` (no principals
    configured; a loopback server acts as the OS user)."""

    def has(self, role: str) -> bool:
        """Whether this principal may act in `role`."""
        return role in self.roles

    def may_review(self, category: str) -> bool:
        """Whether this principal may decide approval requests of `category`."""
        if not self.has("reviewer"):
            return False
        return self.categories is None or category in self.categories

    @property
    def role_names(self) -> list[str]:
        """The granted roles, most powerful first (for display)."""
        return [role for role in reversed(ROLES) if role in self.roles]

    @classmethod
    def from_record(cls, record: PrincipalRecord, via: str) -> Principal:
        return cls(
            name=record.name,
            roles=implied(record.roles),
            categories=None if record.categories is None else frozenset(record.categories),
            via=via,
        )

    @classmethod
    def local(cls, name: str) -> Principal:
        """The OS user of a loopback server with no principals configured: may do anything."""
        return cls(name=name, roles=GRANTS["admin"], via="local")


def implied(roles: Iterable[str]) -> frozenset[str]:
    """Every role `roles` grant (an operator is also a viewer…)."""
    granted: set[str] = set()
    for role in roles:
        granted |= GRANTS.get(role, frozenset())
    return frozenset(granted)


def hash_token(token: str) -> str:
    """``sha256:<hex>`` of a token: what the store keeps instead of the secret."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def parse_roles(text: str | Sequence[str]) -> list[str]:
    """``"operator,reviewer"`` (or a list) → ``["operator", "reviewer"]``, checked."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    roles = [part.strip().lower() for part in parts if part.strip()]
    unknown = [role for role in roles if role not in ROLES]
    if not roles or unknown:
        raise UserError(
            f"unknown role {', '.join(unknown) or '(none)'}; use one or more of "
            f"{', '.join(ROLES)}, e.g. --role reviewer"
        )
    return sorted(set(roles), key=ROLES.index)


def parse_categories(text: str | Sequence[str] | None) -> list[str] | None:
    """``"send,refund"`` → ``["refund", "send"]``; ``None`` or empty: every category."""
    if text is None:
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    categories = sorted({part.strip() for part in parts if part.strip()})
    return categories or None


async def create_principal(
    store: Store,
    name: str,
    roles: str | Sequence[str],
    *,
    categories: str | Sequence[str] | None = None,
    created_by: str | None = None,
) -> tuple[PrincipalRecord, str]:
    """Create a principal and its token; returns the record and the secret (shown once)."""
    if not _NAME.match(name or ""):
        raise UserError(
            f"principal name {name!r} must be 1-128 letters, digits or . _ @ + - (a user name "
            "or an email address), starting with a letter or digit"
        )
    role_list = parse_roles(roles)
    category_list = parse_categories(categories)
    if category_list is not None and "reviewer" not in role_list:
        raise UserError(
            f"--categories limits what a reviewer may decide; {name} has no reviewer role "
            f"(roles: {', '.join(role_list)}); add --role reviewer or drop --categories"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = PrincipalRecord(
        name=name,
        roles=role_list,
        token_hash=hash_token(token),
        created_at=time.time(),
        categories=category_list,
        created_by=created_by,
    )
    if not await store.add_principal(record):
        raise UserError(
            f"principal {name!r} already exists; revoke it first with `tether tokens revoke "
            f"{name}` to issue a new token"
        )
    return record, token


async def authenticate(store: Store, token: str, via: str = "token") -> Principal | None:
    """The active principal holding `token`, or ``None``."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    record = await store.principal_by_token(hash_token(token))
    return None if record is None else Principal.from_record(record, via)


async def list_principals(store: Store) -> list[PrincipalRecord]:
    """Every principal (revoked ones too), by name; no secrets (the store has none)."""
    return await store.list_principals()


async def revoke_principal(store: Store, name: str) -> None:
    """Revoke `name`'s token: requests with it get 401 from now on."""
    if not await store.revoke_principal(name, time.time()):
        existing = await store.get_principal(name)
        state = "is already revoked" if existing is not None else "does not exist"
        raise UserError(f"principal {name!r} {state}; see `tether tokens list`")


def login_name() -> str:
    """Who this process runs as: the OS login name, else ``uid:N`` (never empty). The starter
    `tether.App` records on runs nobody named a starter for, and the CLI's local identity."""
    # Every start records it: cached per value of the variables getpass reads (a passwd
    # lookup per run cost more than the run's insert).
    return _login_name(*(os.environ.get(v) for v in ("LOGNAME", "USER", "LNAME", "USERNAME")))


@functools.lru_cache(maxsize=8)
def _login_name(*environment: str | None) -> str:
    try:
        name = getpass.getuser()
    except Exception:  # no $USER/$LOGNAME and no passwd entry (some containers)
        name = ""
    if name:
        return name
    getuid = getattr(os, "getuid", None)
    return f"uid:{getuid()}" if callable(getuid) else "unknown-os-user"
