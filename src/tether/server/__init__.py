"""The HTTP API and web dashboard of `tether serve`.

``create_app(tether_app, auth=Auth(...))`` returns a FastAPI application: JSON under ``/api``
(runs, approvals, stats, the audit trail, principals), server-rendered pages for operators and
reviewers, static files under ``/static``. Every request is authenticated and every route
declares the role it needs (`tether.server.auth`). See docs/dashboard.md.
"""

from tether.server.factory import create_app

__all__ = ["create_app"]
