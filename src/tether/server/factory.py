"""`create_app`: the FastAPI application behind `tether serve` (JSON API under /api + dashboard).

Routes are split by role — runs (`runs`, `pages`), approvals (`approvals`, mounted only when the
App has the trust layer's client API), stats/cost (`stats`, mounted only when the observe layer
is there), signing in (`signin`), the audit trail (`audit`) and principals (`tokens`). Every
route declares the role it needs (`tether.server.auth.role`) and goes through `AccessControl`;
none reaches into the store except through the App and the access layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

# Route modules by path, not through the package (whose __init__ imports this module).
import tether.server.approvals as approvals
import tether.server.audit as audit
import tether.server.events as events
import tether.server.metrics as metrics
import tether.server.pages as pages
import tether.server.policy as policy
import tether.server.runs as runs
import tether.server.signin as signin
import tether.server.stats as stats
import tether.server.tokens as tokens
import tether.server.workers as workers
from tether.app import App
from tether.server.auth import AccessControl, Auth, authorize, role
from tether.server.errors import install_error_handlers
from tether.server.rendering import HERE, make_templates


def create_app(
    tether_app: App, *, allowed_hosts: Sequence[str] | None = None, auth: Auth | None = None,
    metric_labels: Sequence[str] = (),
) -> FastAPI:
    """The HTTP API (under ``/api``) and the web dashboard for `tether_app`'s store.

    Features appear with the layers the App has: approvals when the trust layer provides
    ``approvals_async``, stats and cost when the observe layer is importable. `allowed_hosts`
    are the host names requests may be addressed to (``None`` or ``"*"``: any); `tether serve`
    sets them so that a rebinding DNS name cannot reach a dashboard bound to 127.0.0.1. `auth`
    says how requests authenticate (default: bearer tokens and dashboard sessions only, never
    local mode; see `Auth`). `metric_labels`: the run label keys ``/metrics`` breaks model
    calls, tokens and spend down by (e.g. ``team``, ``tenant``).
    """
    api = FastAPI(
        title="tether",
        summary="Runs, journals, signals and approvals of a tether store.",
        # FastAPI's interactive docs page loads its scripts from a CDN; the dashboard serves
        # everything itself, so only the OpenAPI document is offered.
        docs_url=None,
        openapi_url="/api/openapi.json",
        redoc_url=None,
        dependencies=[Depends(authorize)],
    )
    auth = auth or Auth()
    api.state.tether = tether_app
    api.state.auth = auth
    api.state.templates = make_templates()
    from tether.observe.metrics import Metrics

    api.state.metrics = Metrics(tether_app.store, labels=metric_labels)
    api.state.features = {
        "approvals": approvals.available(tether_app),
        "stats": stats.available(tether_app),
    }
    api.state.templates.env.globals["features"] = api.state.features
    api.add_middleware(AccessControl, auth=auth, allowed_hosts=allowed_hosts)
    install_error_handlers(api)
    api.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    api.include_router(events.router)
    api.include_router(runs.router)
    api.include_router(pages.router)
    api.include_router(workers.router)
    api.include_router(signin.router)
    api.include_router(audit.router)
    api.include_router(tokens.router)
    api.include_router(metrics.router)
    if api.state.features["approvals"]:
        api.state.templates.env.globals["refusal"] = approvals.refusal
        api.include_router(approvals.router)
        api.include_router(policy.router)
    if api.state.features["stats"]:
        api.include_router(stats.router)

    @api.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:  # pyright: ignore[reportUnusedFunction]
        return RedirectResponse("/runs", status_code=307)

    @api.get("/api/health", tags=["meta"], **role("public"))
    async def health() -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]
        """Liveness plus which optional features this server has (no authentication)."""
        return {"ok": True, "features": api.state.features}

    @api.get("/favicon.ico", include_in_schema=False, **role("public"))
    async def favicon() -> HTMLResponse:  # pyright: ignore[reportUnusedFunction]
        return HTMLResponse(status_code=204)

    return api
