"""The one error shape of the API (``{"error": {"type", "message", "fields"?, …}}``) and the
handlers that answer every failure with it (JSON under /api, an error page elsewhere)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tether.errors import (
    StoreNotFound,
    StoreUnavailable,
    TetherError,
    UnknownRun,
    UnknownWorkflow,
    UserError,
)
from tether.server.rendering import templates_of

log = logging.getLogger("tether.server")


class ApiError(Exception):
    """An error a route answers with: HTTP status, a type name, a message, the field, and any
    further keys of the error object (``role`` for a 403)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "Error",
        field: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.field = field
        self.extra = extra or {}


def error_body(
    type: str,
    message: str,
    fields: list[dict[str, str]] | None = None,
    extra: dict[str, Any] | None = None,
) -> Any:
    """The one error shape of the API: ``{"error": {"type", "message", "fields"?, …}}``."""
    error: dict[str, Any] = {"type": type, "message": message}
    if fields:
        error["fields"] = fields
    error.update(extra or {})
    return {"error": error}


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_response(
    request: Request,
    status: int,
    type: str,
    message: str,
    fields: list[dict[str, str]] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """The error as JSON for the API, as a page for the dashboard."""
    headers = {"WWW-Authenticate": 'Bearer realm="tether"'} if status == 401 else None
    if wants_json(request):
        return JSONResponse(error_body(type, message, fields, extra), status_code=status,
                            headers=headers)
    return templates_of(request).TemplateResponse(
        request, "error.html",
        {"status": status, "type": type, "message": message,
         "me": getattr(request.state, "principal", None)},
        status_code=status, headers=headers,
    )


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "input") → "input"; ("query", "limit") → "limit"; nested keys keep their path.
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def _validation_field(err: dict[str, Any]) -> dict[str, str]:
    if err.get("type") == "json_invalid":
        # pydantic says "JSON decode error" at the body's character offset: say what it is.
        why = (err.get("ctx") or {}).get("error")
        return {"field": "body", "message": "the request body is not valid JSON"
                + (f" ({why}, at character {err['loc'][-1]})" if why else "")}
    return {"field": _field_name(err.get("loc", ())), "message": str(err.get("msg", ""))}


def install_error_handlers(api: FastAPI) -> None:
    """Answer every failure in the API's error shape."""

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        fields = [{"field": exc.field, "message": exc.message}] if exc.field else None
        return error_response(request, exc.status, exc.type, exc.message, fields, exc.extra)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        fields = [_validation_field(err) for err in exc.errors()]
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields) or "invalid request"
        return error_response(request, 422, "ValidationError", f"invalid request — {message}", fields)

    async def on_tether_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TetherError)
        if isinstance(exc, UnknownRun):
            return error_response(request, 404, "UnknownRun", str(exc))
        if isinstance(exc, UnknownWorkflow):
            fields = [{"field": "workflow", "message": str(exc)}]
            return error_response(request, 422, "UnknownWorkflow", str(exc), fields)
        if isinstance(exc, UserError):
            return error_response(request, 400, type(exc).__name__, str(exc))
        if isinstance(exc, StoreUnavailable | StoreNotFound):
            return error_response(request, 503, type(exc).__name__, str(exc))
        return error_response(request, 500, type(exc).__name__, str(exc))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(
            request, 500, type(exc).__name__,
            f"{request.method} {request.url.path} failed: {type(exc).__name__}: {exc} "
            "(a bug in tether's server; the traceback is in the server's log)",
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = str(exc.detail) if exc.status_code != 404 else f"no page at {request.url.path}"
        return error_response(request, exc.status_code, "HTTPError", message)

    api.add_exception_handler(ApiError, on_api_error)
    api.add_exception_handler(RequestValidationError, on_validation)
    api.add_exception_handler(TetherError, on_tether_error)
    api.add_exception_handler(StarletteHTTPException, on_http_error)
    api.add_exception_handler(Exception, on_unexpected)
