"""The HTTP API and web dashboard of `tether serve`.

``create_app(tether_app)`` returns a FastAPI application: JSON under ``/api`` (runs, approvals),
server-rendered pages for operators and reviewers, static files under ``/static``. See
docs/dashboard.md.
"""

from tether.server.factory import create_app

__all__ = ["create_app"]
