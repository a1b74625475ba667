"""Who is asking, and may they: authentication, roles per route, CSRF, and the audit trail.

Every request except the public ones (``/api/health``, ``/login``, static files) goes through
`AccessControl`, in this order:

1. **Host.** Only the host names the server is meant to be reached by are served (a rebinding
   DNS name cannot reach a dashboard bound to 127.0.0.1).
2. **Who.** A bearer token (``Authorization: Bearer tether_…``); else, when the peer is a
   trusted proxy, the identity header it sets (``--auth-header X-Forwarded-User``) naming a
   principal; else the dashboard's signed session cookie; else, in local mode (a loopback server
   whose store has no principals), the OS user. Nobody: 401 (the dashboard redirects to
   ``/login``). ``X-Forwarded-*`` headers from any other peer are ignored.
3. **Cross-site.** State-changing requests must come from this origin, carry a JSON body, and —
   when the browser authenticated them by itself (session cookie, SSO header) — the page's CSRF
   token in ``X-CSRF-Token``.
4. **Role.** Each route declares the role it needs (`role`); undeclared routes need ``viewer``
   to read and ``operator`` to change anything. Missing: 403 naming the role.
5. **Audit.** Every state-changing request of a known principal is recorded with its outcome.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.routing import Match

from tether.access.audit import record
from tether.access.principals import Principal
from tether.errors import StoreNotFound, StoreUnavailable, UserError
from tether.server.errors import ApiError, error_body
from tether.server.rendering import tether_app_of

log = logging.getLogger("tether.server")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset({"/api/health", "/login", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/",)
"""Served without authentication (besides routes declaring ``role("public")``)."""
MACHINE_PATHS = frozenset({"/metrics"})
"""Outside ``/api`` but read by programs (Prometheus): a 401, never a redirect to sign in."""
SELF_CHECKED = frozenset({"/login", "/logout"})
"""Form posts that check their own CSRF field instead of the JSON body and header."""
SESSION_COOKIE = "tether_session"
CSRF_HEADER = "x-csrf-token"
ROLE_KEY = "x-tether-role"
ACTION_KEY = "x-tether-action"
VIA = {"token": "api", "session": "dashboard", "sso": "dashboard", "local": "local"}


def role(name: str, action: str | None = None) -> dict[str, Any]:
    """Route options declaring the role a route needs and, for a mutation, the audit action:
    ``@router.post("/x", **role("operator", "run.cancel"))``. ``"public"``: no authentication."""
    extra: dict[str, Any] = {ROLE_KEY: name}
    if action is not None:
        extra[ACTION_KEY] = action
    return {"openapi_extra": extra}


def principal_of(request: Request) -> Principal:
    """The authenticated principal of a request to a protected route."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        raise ApiError(401, "sign in first: send Authorization: Bearer <token>", type="Unauthorized")
    return principal


def note(request: Request, *, target: str | None = None, action: str | None = None,
         **detail: Any) -> None:
    """Add to what the audit trail records about this request (the new run's id, the edits…)."""
    audit = _audit_state(request)
    if target is not None:
        audit["target"] = target
    if action is not None:
        audit["action"] = action
    audit.setdefault("detail", {}).update(detail)


def _audit_state(request: Request) -> dict[str, Any]:
    existing: dict[str, Any] | None = getattr(request.state, "audit", None)
    if existing is None:
        existing = {}
        request.state.audit = existing
    return existing


class Auth:
    """How `tether serve` authenticates: local mode, SSO headers, trusted proxies, sessions."""

    def __init__(
        self,
        *,
        local_user: str | None = None,
        identity_headers: Sequence[str] = (),
        trusted_proxies: Sequence[str] = (),
        session_secret: str | bytes | None = None,
        session_hours: float = 12.0,
    ) -> None:
        self.local_user = local_user
        """With no principals in the store, every request acts as this OS user (local mode; only
        for a loopback server). ``None``: authentication is always required."""
        self.identity_headers = tuple(h.strip().lower() for h in identity_headers if h.strip())
        """Headers a trusted proxy sets to the signed-in user (``x-forwarded-user``…)."""
        try:
            self.trusted = tuple(ipaddress.ip_network(p.strip(), strict=False)
                                 for p in trusted_proxies)
        except ValueError as exc:
            raise UserError(f"--trusted-proxy: {exc}; give an address or a network "
                            "like 10.0.0.5 or 10.0.0.0/24") from None
        if self.identity_headers and not self.trusted:
            raise UserError(
                "--auth-header needs --trusted-proxy ADDRESS: the identity header is believed "
                "only from the reverse proxy that sets it"
            )
        if isinstance(session_secret, str):
            session_secret = session_secret.encode()
        self.secret = session_secret or secrets.token_bytes(32)
        self.session_seconds = session_hours * 3600

    # --- peers ---------------------------------------------------------------------------------

    def trusted_peer(self, request: Request) -> bool:
        """Whether the TCP peer is a configured trusted proxy (its X-Forwarded-* count)."""
        host = request.client.host if request.client else ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    def forwarded(self, request: Request, name: str) -> str | None:
        """An ``X-Forwarded-*`` header, only from a trusted proxy."""
        if not self.trusted_peer(request):
            return None
        value = request.headers.get(name)
        return value.split(",")[0].strip() if value else None

    def secure(self, request: Request) -> bool:
        return request.url.scheme == "https" or self.forwarded(request, "x-forwarded-proto") == "https"

    # --- sessions and CSRF -----------------------------------------------------------------------

    def _sign(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()

    def session_cookie(self, name: str, token_hash: str) -> str:
        """A signed cookie value naming the principal and binding it to its current token."""
        expires = int(time.time() + self.session_seconds)
        payload = base64.urlsafe_b64encode(
            json.dumps([name, token_hash[-16:], expires]).encode()
        ).decode()
        return f"{payload}.{self._sign(payload)}"

    def read_session(self, value: str) -> tuple[str, str] | None:
        """``(name, token fingerprint)`` of a valid, unexpired session cookie."""
        payload, _, signature = value.partition(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            name, fingerprint, expires = json.loads(base64.urlsafe_b64decode(payload))
        except (ValueError, TypeError):
            return None
        if not isinstance(name, str) or not isinstance(fingerprint, str):
            return None
        if not isinstance(expires, int) or expires < time.time():
            return None
        return name, fingerprint

    def csrf_for(self, key: str) -> str:
        """The CSRF token of a browser identity (session cookie, SSO user)."""
        return self._sign("csrf|" + key)[:40]

    # --- identification ----------------------------------------------------------------------

    async def identify(self, request: Request) -> tuple[Principal | None, str | None]:
        """The principal and, for identities a browser sends by itself, its CSRF key."""
        store = tether_app_of(request).store
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, "Authorization must be 'Bearer <token>'", type="Unauthorized")
            from tether.access.principals import authenticate

            principal = await authenticate(store, token.strip())
            if principal is None:
                raise ApiError(
                    401, "this token is not valid (revoked, or mistyped); ask an admin for one "
                    "(`tether tokens create NAME --role …`)", type="Unauthorized",
                )
            return principal, None
        if self.identity_headers and self.trusted_peer(request):
            for name in self.identity_headers:
                identity = (request.headers.get(name) or "").strip()
                if not identity:
                    continue
                found = await store.get_principal(identity)
                if found is None or found.revoked_at is not None:
                    raise ApiError(
                        403, f"{identity} (from {name}) is signed in at the proxy but is no "
                        f"tether principal; an admin can add them with `tether tokens create "
                        f"{identity} --role viewer`", type="Forbidden",
                    )
                return Principal.from_record(found, "sso"), "sso|" + identity
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            session = self.read_session(cookie)
            if session is not None:
                found = await store.get_principal(session[0])
                if (found is not None and found.revoked_at is None
                        and found.token_hash.endswith(session[1])):
                    return Principal.from_record(found, "session"), "session|" + cookie
        if self.local_user is not None and not await store.has_principals():
            return Principal.local(self.local_user), None
        return None, None


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _route_of(request: Request) -> Any:
    route = request.scope.get("route")
    if route is not None:
        return route
    for candidate in request.app.routes:
        match, child = candidate.matches(request.scope)
        if match == Match.FULL:
            request.scope.setdefault("path_params", child.get("path_params", {}))
            return candidate
    return None


def required_role(route: Any, method: str) -> str:
    """The role a route declared, else ``viewer`` to read and ``operator`` to change."""
    extra: dict[str, Any] = getattr(route, "openapi_extra", None) or {}
    declared = extra.get(ROLE_KEY)
    if isinstance(declared, str):
        return declared
    return "viewer" if method in SAFE_METHODS else "operator"


async def authorize(request: Request) -> None:
    """The dependency every route runs: the principal must hold the route's role."""
    needed = required_role(request.scope.get("route"), request.method)
    if needed == "public":
        return
    principal = principal_of(request)
    if not principal.has(needed):
        held = ", ".join(principal.role_names) or "no role"
        raise ApiError(
            403,
            f"{request.method} {request.url.path} needs the {needed} role; {principal.name} "
            f"has {held}",
            type="Forbidden",
            extra={"role": needed},
        )


def _refuse(status: int, type: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(type, message, None, extra or None), status_code=status)


class AccessControl(BaseHTTPMiddleware):
    """Steps 1-3 and 5 of the module docstring (step 4 is `authorize`, per route)."""

    def __init__(self, app: Any, auth: Auth, allowed_hosts: Sequence[str] | None = None) -> None:
        super().__init__(app)
        self.auth = auth
        self.allowed_hosts = (
            None if allowed_hosts is None or "*" in allowed_hosts
            else frozenset(h.lower().strip("[]") for h in allowed_hosts)
        )

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        refused = self._check_host(request)
        if refused is not None:
            return refused
        request.state.principal = None
        request.state.csrf = None
        path = request.url.path
        if _public(path) or required_role(_route_of(request), request.method) == "public":
            return await call_next(request)
        try:
            principal, key = await self.auth.identify(request)
        except ApiError as exc:
            return _refuse(exc.status, exc.type, exc.message)
        except (StoreUnavailable, StoreNotFound) as exc:
            # Who is asking is kept in the store: without it, nobody can be let in.
            return _refuse(503, type(exc).__name__, str(exc))
        if principal is None:
            browser = not path.startswith("/api/") and path not in MACHINE_PATHS
            if request.method in SAFE_METHODS and browser:
                return RedirectResponse(f"/login?next={quote(_local_target(request), safe='')}",
                                        status_code=303)
            return _refuse(
                401, "Unauthorized",
                f"{request.method} {path} needs authentication: send Authorization: Bearer "
                "<token> (create one with `tether tokens create NAME --role …`)",
            )
        request.state.principal = principal
        request.state.csrf = self.auth.csrf_for(key) if key is not None else None
        refused = await _check_text(request)
        if refused is not None:
            return refused
        unsafe = request.method not in SAFE_METHODS
        if unsafe:
            refused = self._check_cross_site(request, key)
            if refused is not None:
                await self._audit(request, principal, refused.status_code,
                                  json.loads(bytes(refused.body)))
                return refused
        response = await call_next(request)
        if unsafe and path not in SELF_CHECKED:
            response = await self._audit_response(request, principal, response)
        return response

    def _check_host(self, request: Request) -> Response | None:
        if self.allowed_hosts is None:
            return None
        # DNS rebinding: a site whose name resolves to 127.0.0.1 is "same origin" with itself,
        # so only the names this server is meant to be reached by are served.
        name = urlsplit("//" + request.headers.get("host", "")).hostname or ""
        if name.lower() in self.allowed_hosts:
            return None
        return _refuse(
            421, "HostRefused",
            f"this tether server answers to {', '.join(sorted(self.allowed_hosts))}, not "
            f"{name!r}; add it with `tether serve --allowed-host {name}`",
        )

    def _check_cross_site(self, request: Request, key: str | None) -> JSONResponse | None:
        method, path = request.method, request.url.path
        origin = request.headers.get("origin")
        # Behind a trusted proxy that rewrites Host, its X-Forwarded-Host is the origin's host;
        # from anyone else that header is ignored (it would let a forged one pass this check).
        host = self.auth.forwarded(request, "x-forwarded-host") or request.headers.get("host", "")
        if origin is not None and origin != "null" and urlsplit(origin).netloc != host:
            return _refuse(
                403, "CrossOriginRefused",
                f"{method} {path} from origin {origin} refused: only pages served by this "
                f"server ({host}) may change runs",
            )
        if request.headers.get("sec-fetch-site") == "cross-site" or origin == "null":
            return _refuse(403, "CrossOriginRefused", f"{method} {path} refused: cross-site request")
        if path in SELF_CHECKED:
            return None
        if key is not None:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent, self.auth.csrf_for(key)):
                return _refuse(
                    403, "CSRFTokenMissing",
                    f"{method} {path} refused: the dashboard's CSRF token is missing or stale "
                    f"(send it in X-CSRF-Token; reload the page), or use a bearer token",
                )
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/json":
            return _refuse(
                415, "UnsupportedMediaType",
                f"{method} {path} needs a JSON body with Content-Type: application/json "
                f"(got {content_type or 'none'!r})",
            )
        return None

    async def _audit_response(
        self, request: Request, principal: Principal, response: Response
    ) -> Response:
        body: Any = None
        if response.status_code >= 400:
            # Keep the error's message for the trail: read the (small) body and send it on.
            chunks = [chunk async for chunk in response.body_iterator]  # type: ignore[attr-defined]
            raw = b"".join(c if isinstance(c, bytes) else str(c).encode() for c in chunks)
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            response = Response(raw, status_code=response.status_code,
                                headers=dict(response.headers), media_type=response.media_type)
        await self._audit(request, principal, response.status_code, body)
        return response

    async def _audit(
        self, request: Request, principal: Principal, status: int, body: Any
    ) -> None:
        route = _route_of(request)
        extra: dict[str, Any] = getattr(route, "openapi_extra", None) or {}
        noted = _audit_state(request)
        action = noted.get("action") or extra.get(ACTION_KEY) or getattr(route, "name", None) \
            or f"{request.method} {request.url.path}"
        params: dict[str, Any] = request.scope.get("path_params") or {}
        target = noted.get("target") or next(iter(params.values()), None)
        detail: dict[str, Any] = dict(noted.get("detail") or {})
        if status >= 400:
            error = body.get("error") if isinstance(body, dict) else None
            detail["status"] = status
            if isinstance(error, dict):
                detail["error"] = f"{error.get('type')}: {error.get('message')}"
        outcome = "ok" if status < 400 else ("denied" if status in (401, 403) else "failed")
        try:
            # What a client chose (an unknown path, an id) is kept short: any principal may be
            # refused, and a refusal must not let it write pages into everyone's trail.
            await record(tether_app_of(request).store, principal.name, _clip(str(action)),
                         None if target is None else _clip(str(target)), outcome=outcome,
                         detail=detail, via=VIA.get(principal.via, principal.via))
        except Exception:
            # The mutation already happened; losing its audit line is logged loudly rather
            # than turning a done change into an error the client would retry.
            log.error("cannot record %s by %s in the audit trail", action, principal.name,
                      exc_info=True)


AUDIT_TEXT_LIMIT = 300
"""Characters of a client-chosen action or target kept in an audit entry."""


def _clip(text: str) -> str:
    return text if len(text) <= AUDIT_TEXT_LIMIT else f"{text[:AUDIT_TEXT_LIMIT]}… ({len(text)} chars)"


MAX_DEPTH = 64
"""JSON nested deeper than this is refused (no tether value needs it; parsers recurse on it)."""


def _storable(value: Any, depth: int = 0) -> bool:
    """Whether every string in a JSON value can be stored: no NUL character (PostgreSQL text
    cannot hold one) and no unpaired surrogate (not encodable as UTF-8)."""
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, str):
        return "\x00" not in value and not _SURROGATES.search(value)
    if isinstance(value, list):
        return all(_storable(item, depth + 1) for item in value)  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, dict):
        return all(
            _storable(k, depth + 1) and _storable(v, depth + 1)
            for k, v in value.items()  # pyright: ignore[reportUnknownVariableType]
        )
    return True


_SURROGATES = re.compile("[\ud800-\udfff]")


async def _check_text(request: Request) -> Response | None:
    """Refuse text no store can keep, before any route sees it (a 4xx, never a store error)."""
    what: str | None = None
    if not _storable(request.url.path):
        what = "the path"
    elif not all(_storable(k) and _storable(v) for k, v in request.query_params.multi_items()):
        what = "a query parameter"
    elif request.method not in SAFE_METHODS and "json" in request.headers.get("content-type", ""):
        raw = await request.body()
        try:
            parsed = json.loads(raw)
        except RecursionError:
            what = "the JSON body"
        except ValueError:
            return None  # not JSON: the route's validation names the problem
        else:
            if not _storable(parsed):
                what = "the JSON body"
    if what is None:
        return None
    return _refuse(
        400 if "path" in what or "query" in what else 422, "ValidationError",
        f"{request.method} {request.url.path!r}: {what} holds a NUL character or an unpaired "
        f"surrogate (no store can keep them), or JSON nested deeper than {MAX_DEPTH} levels; "
        "send plain UTF-8 text",
    )


def _local_target(request: Request) -> str:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return target
