"""Who may do what, and what they did: principals, roles, tokens and the audit trail.

Part of the interfaces layer (DESIGN.md): the HTTP API, the dashboard and the CLI use it; the
store keeps the rows (`PrincipalRecord`, `AuditRecord`). A principal has roles —

* ``viewer``: read runs, approvals, stats and the audit trail;
* ``operator``: also start, signal, cancel and fork runs and raise their budgets;
* ``reviewer``: also decide approval requests, optionally only of some risk categories, and
  never of a run it started;
* ``admin``: everything, plus tokens and the trust policy —

and a bearer token whose secret is shown once and stored only as a hash.
"""

from tether.access.audit import AUDIT_ACTIONS, audit_json, list_audit, record
from tether.access.principals import (
    ROLES,
    Principal,
    authenticate,
    create_principal,
    hash_token,
    list_principals,
    revoke_principal,
)

__all__ = [
    "AUDIT_ACTIONS",
    "ROLES",
    "Principal",
    "audit_json",
    "authenticate",
    "create_principal",
    "hash_token",
    "list_audit",
    "list_principals",
    "record",
    "revoke_principal",
]
