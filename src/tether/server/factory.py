"""`create_app`: the FastAPI application behind `tether serve` (JSON API under /api + dashboard).

Routes are split by role — runs (`tether.server.runs`, `tether.server.pages`), approvals
(`tether.server.approvals`, mounted only when the App has the trust layer's client API) and
stats/cost (`tether.server.stats`, mounted only when the observe layer is there). Every route
goes through the tether App's client API; none reaches into the store.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from tether.engine.app import App
from tether.errors import (
    StoreNotFound,
    StoreUnavailable,
    TetherError,
    UnknownRun,
    UnknownWorkflow,
    UserError,
)
from tether.server import views

HERE = Path(__file__).parent
log = logging.getLogger("tether.server")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ApiError(Exception):
    """An error a route answers with: HTTP status, a type name, a message and the field."""

    def __init__(
        self, status: int, message: str, *, type: str = "Error", field: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.field = field


def error_body(type: str, message: str, fields: list[dict[str, str]] | None = None) -> Any:
    """The one error shape of the API: ``{"error": {"type", "message", "fields"?}}``."""
    error: dict[str, Any] = {"type": type, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def tether_app_of(request: Request) -> App:
    """The tether App this server was created for."""
    app: App = request.app.state.tether
    return app


def templates_of(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


PENDING_SHOWN = 99
"""Past this many pending approvals the nav shows ``99+`` (counting more costs more)."""


async def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """A dashboard page, with what every page's header shows (pending approvals)."""
    pending: str | None = None
    if request.app.state.features.get("approvals"):
        try:
            found = await tether_app_of(request).approvals_async(
                status="pending", limit=PENDING_SHOWN + 1
            )
            pending = f"{PENDING_SHOWN}+" if len(found) > PENDING_SHOWN else str(len(found))
        except Exception:
            # A count in the header must not take every page down with it; the approvals
            # page itself shows the error.
            log.warning("cannot count pending approvals", exc_info=True)
    response: HTMLResponse = templates_of(request).TemplateResponse(
        request, template, {**context, "pending_approvals": pending}, status_code=status_code
    )
    return response


class SameOriginGuard(BaseHTTPMiddleware):
    """Refuse state-changing requests another site could make the operator's browser send.

    The dashboard has no login (see docs/dashboard.md), so a page on another origin must not be
    able to cancel or signal runs: POSTs must carry a JSON body (a cross-site HTML form cannot
    send one without a CORS preflight, which this server never grants) and, when the browser
    says where the request comes from, come from this origin.
    """

    def __init__(self, app: Any, allowed_hosts: Sequence[str] | None = None) -> None:
        super().__init__(app)
        self.allowed_hosts = (
            None if allowed_hosts is None or "*" in allowed_hosts
            else frozenset(h.lower().strip("[]") for h in allowed_hosts)
        )

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self.allowed_hosts is not None:
            # DNS rebinding: a site whose name resolves to 127.0.0.1 is "same origin" with
            # itself, so only the names this server is meant to be reached by are served.
            name = urlsplit("//" + request.headers.get("host", "")).hostname or ""
            if name.lower() not in self.allowed_hosts:
                return JSONResponse(
                    error_body(
                        "HostRefused",
                        f"this tether server answers to {', '.join(sorted(self.allowed_hosts))}, "
                        f"not {name!r}; add it with `tether serve --allowed-host {name}`",
                    ),
                    status_code=421,
                )
        if request.method in UNSAFE_METHODS:
            origin = request.headers.get("origin")
            # Behind a proxy that rewrites Host, the proxy's X-Forwarded-Host is the origin's.
            host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
            if origin is not None and origin != "null" and urlsplit(origin).netloc != host:
                return JSONResponse(
                    error_body(
                        "CrossOriginRefused",
                        f"{request.method} {request.url.path} from origin {origin} refused: "
                        f"only pages served by this server ({host}) may change runs",
                    ),
                    status_code=403,
                )
            if request.headers.get("sec-fetch-site") == "cross-site" or origin == "null":
                return JSONResponse(
                    error_body(
                        "CrossOriginRefused",
                        f"{request.method} {request.url.path} refused: cross-site request",
                    ),
                    status_code=403,
                )
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type != "application/json":
                return JSONResponse(
                    error_body(
                        "UnsupportedMediaType",
                        f"{request.method} {request.url.path} needs a JSON body with "
                        f"Content-Type: application/json (got {content_type or 'none'!r})",
                    ),
                    status_code=415,
                )
        return await call_next(request)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error_response(
    request: Request, status: int, type: str, message: str, fields: list[dict[str, str]] | None = None
) -> Response:
    if _wants_json(request):
        return JSONResponse(error_body(type, message, fields), status_code=status)
    return templates_of(request).TemplateResponse(
        request, "error.html", {"status": status, "type": type, "message": message}, status_code=status
    )


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "input") → "input"; ("query", "limit") → "limit"; nested keys keep their path.
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def _install_error_handlers(api: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        fields = [{"field": exc.field, "message": exc.message}] if exc.field else None
        return _error_response(request, exc.status, exc.type, exc.message, fields)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        fields = [
            {"field": _field_name(err.get("loc", ())), "message": str(err.get("msg", ""))}
            for err in exc.errors()
        ]
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields) or "invalid request"
        return _error_response(request, 422, "ValidationError", f"invalid request — {message}", fields)

    async def on_tether_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TetherError)
        if isinstance(exc, UnknownRun):
            return _error_response(request, 404, "UnknownRun", str(exc))
        if isinstance(exc, UnknownWorkflow):
            fields = [{"field": "workflow", "message": str(exc)}]
            return _error_response(request, 422, "UnknownWorkflow", str(exc), fields)
        if isinstance(exc, UserError):
            return _error_response(request, 400, type(exc).__name__, str(exc))
        if isinstance(exc, StoreUnavailable | StoreNotFound):
            return _error_response(request, 503, type(exc).__name__, str(exc))
        return _error_response(request, 500, type(exc).__name__, str(exc))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error_response(
            request, 500, type(exc).__name__,
            f"{request.method} {request.url.path} failed: {type(exc).__name__}: {exc} "
            "(a bug in tether's server; the traceback is in the server's log)",
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = str(exc.detail) if exc.status_code != 404 else f"no page at {request.url.path}"
        return _error_response(request, exc.status_code, "HTTPError", message)

    api.add_exception_handler(ApiError, on_api_error)
    api.add_exception_handler(RequestValidationError, on_validation)
    api.add_exception_handler(TetherError, on_tether_error)
    api.add_exception_handler(StarletteHTTPException, on_http_error)
    api.add_exception_handler(Exception, on_unexpected)


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.filters["pretty"] = views.pretty
    env.filters["seconds"] = views.seconds
    env.filters["ago"] = views.ago
    env.filters["clock"] = views.clock
    env.filters["money"] = views.money
    env.filters["step_error"] = views.step_error_text
    return templates


def create_app(tether_app: App, *, allowed_hosts: Sequence[str] | None = None) -> FastAPI:
    """The HTTP API (under ``/api``) and the web dashboard for `tether_app`'s store.

    Features appear with the layers the App has: approvals when the trust layer provides
    ``approvals_async``, stats and cost when the observe layer is importable. `allowed_hosts`
    are the host names requests may be addressed to (``None`` or ``"*"``: any); `tether serve`
    sets them so that a rebinding DNS name cannot reach a dashboard bound to 127.0.0.1.
    """
    from tether.server import approvals, events, pages, runs, stats

    api = FastAPI(
        title="tether",
        summary="Runs, journals, signals and approvals of a tether store.",
        # FastAPI's interactive docs page loads its scripts from a CDN; the dashboard serves
        # everything itself, so only the OpenAPI document is offered.
        docs_url=None,
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    api.state.tether = tether_app
    api.state.templates = _templates()
    api.state.features = {
        "approvals": approvals.available(tether_app),
        "stats": stats.available(tether_app),
    }
    api.state.templates.env.globals["features"] = api.state.features
    api.add_middleware(SameOriginGuard, allowed_hosts=allowed_hosts)
    _install_error_handlers(api)
    api.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    api.include_router(events.router)
    api.include_router(runs.router)
    api.include_router(pages.router)
    if api.state.features["approvals"]:
        api.include_router(approvals.router)
    if api.state.features["stats"]:
        api.include_router(stats.router)

    @api.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:  # pyright: ignore[reportUnusedFunction]
        return RedirectResponse("/runs", status_code=307)

    @api.get("/api/health", tags=["meta"])
    async def health() -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]
        """Liveness plus which optional features this server has."""
        return {"ok": True, "features": api.state.features}

    @api.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> HTMLResponse:  # pyright: ignore[reportUnusedFunction]
        return HTMLResponse(status_code=204)

    return api
