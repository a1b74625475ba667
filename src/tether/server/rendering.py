"""Dashboard pages: the Jinja templates, their filters, and what every page's header shows
(pending approvals, who is signed in, the CSRF token its forms send)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from tether.app import App
from tether.server.argview import diff as args_diff
from tether.server.argview import view as args_view
from tether.server.views import ago, clock, money, pretty, seconds, step_error_text

HERE = Path(__file__).parent
log = logging.getLogger("tether.server")

PENDING_SHOWN = 99
"""Past this many pending approvals the nav shows ``99+`` (counting more costs more)."""


def tether_app_of(request: Request) -> App:
    """The tether App this server was created for."""
    app: App = request.app.state.tether
    return app


def templates_of(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.filters["pretty"] = pretty
    env.filters["seconds"] = seconds
    env.filters["ago"] = ago
    env.filters["clock"] = clock
    env.filters["money"] = money
    env.filters["step_error"] = step_error_text
    env.filters["argview"] = args_view
    env.filters["argdiff"] = args_diff
    return templates


async def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """A dashboard page, with what every page's header shows: pending approvals, the signed-in
    principal (``me``) and the CSRF token its forms carry (``csrf``)."""
    pending: str | None = None
    signed_in = getattr(request.state, "principal", None) is not None
    if request.app.state.features.get("approvals") and signed_in:  # not on the sign-in page
        try:
            found = await tether_app_of(request).approvals_async(
                status="pending", limit=PENDING_SHOWN + 1
            )
            pending = f"{PENDING_SHOWN}+" if len(found) > PENDING_SHOWN else str(len(found))
        except Exception:
            # A count in the header must not take every page down with it; the approvals
            # page itself shows the error.
            log.warning("cannot count pending approvals", exc_info=True)
    state = request.state
    response: HTMLResponse = templates_of(request).TemplateResponse(
        request,
        template,
        {
            **context,
            "pending_approvals": pending,
            "me": getattr(state, "principal", None),
            "csrf": getattr(state, "csrf", None),
        },
        status_code=status_code,
    )
    return response
