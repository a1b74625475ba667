"""Signing in to the dashboard: ``/login`` (a token, once, for a session cookie), ``/logout``
and ``GET /api/me`` (who the request acts as).

The session cookie is signed by the server, HttpOnly and SameSite=Strict, names the principal
and is bound to its current token (revoking the token ends the session). Both forms carry a
CSRF token: the login form a random one doubled in a short-lived cookie, the logout form the
session's own.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tether.access.principals import authenticate
from tether.server.auth import SESSION_COOKIE, Auth, principal_of, role
from tether.server.errors import ApiError
from tether.server.rendering import render, tether_app_of

router = APIRouter()

LOGIN_COOKIE = "tether_login"


def _auth(request: Request) -> Auth:
    auth: Auth = request.app.state.auth
    return auth


def _next(target: str | None) -> str:
    # Only a path on this server: an open redirect would let a link send a signed-in user away.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/runs"
    return target


async def _form(request: Request) -> dict[str, str]:
    raw = (await request.body()).decode("utf-8", "replace")
    return {key: values[-1] for key, values in parse_qs(raw).items()}


async def _login_page(
    request: Request, target: str, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(24)
    store = tether_app_of(request).store
    local = _auth(request).local_user is not None and not await store.has_principals()
    response = await render(
        request,
        "login.html",
        {"login_csrf": nonce, "next": target, "error": error, "local_mode": local,
         "sso": bool(_auth(request).identity_headers), "refresh": None},
        status_code=status_code,
    )
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=600, httponly=True, samesite="strict",
                        secure=_auth(request).secure(request), path="/login")
    return response


@router.get("/login", response_class=HTMLResponse, include_in_schema=False, **role("public"))
async def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    return await _login_page(request, _next(next))


@router.post("/login", include_in_schema=False, **role("public"))
async def login(request: Request) -> Response:
    form = await _form(request)
    target = _next(form.get("next"))
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(form.get("csrf_token", ""), expected):
        return await _login_page(
            request, target, "The sign-in form expired (its CSRF token did not match); try "
            "again.", status_code=403,
        )
    principal = await authenticate(tether_app_of(request).store, form.get("token", "").strip())
    if principal is None:
        return await _login_page(
            request, target, "That token is not valid (revoked, or mistyped).", status_code=401
        )
    record = await tether_app_of(request).store.get_principal(principal.name)
    assert record is not None
    auth = _auth(request)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE, auth.session_cookie(record.name, record.token_hash),
        max_age=int(auth.session_seconds), httponly=True, samesite="strict",
        secure=auth.secure(request), path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout", include_in_schema=False, **role("viewer"))
async def logout(request: Request) -> Response:
    form = await _form(request)
    csrf = getattr(request.state, "csrf", None)
    if csrf is not None and not hmac.compare_digest(form.get("csrf_token", ""), csrf):
        raise ApiError(403, "sign-out refused: the form's CSRF token did not match; reload the "
                       "page", type="CSRFTokenMissing")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/api/me", tags=["meta"])
async def me(request: Request) -> dict[str, Any]:
    """Who this request acts as: name, roles, the risk categories it may review, and how it
    authenticated (``token``, ``session``, ``sso`` or ``local``)."""
    principal = principal_of(request)
    return {
        "name": principal.name,
        "roles": principal.role_names,
        "categories": None if principal.categories is None else sorted(principal.categories),
        "via": principal.via,
    }
