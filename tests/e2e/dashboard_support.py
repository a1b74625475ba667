"""What the browser tests share: a seeded store, the real server and a worker on threads, and
a headless Chromium.

The server is the same uvicorn + `create_app` that `tether serve` runs; the worker is a real
tether worker on its own event loop and its own `App` (as a separate process would have), so a
signal sent from the page travels browser → HTTP API → store → worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tests.conftest import free_port
from tether.server import create_app
from tether.server.auth import Auth

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    """Skip, saying what to install, when there is no browser to drive."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(
            f"browser tests need Chromium at {CHROMIUM}: apt-get install -y chromium "
            "(playwright drives the system browser; `playwright install` is not used)"
        )
    pytest.importorskip("playwright.sync_api", reason="pip install 'tether[dev]' (playwright)")


def build(store_url: str) -> tether.App:
    """The app both the server and the worker load (as `--app` would)."""
    app = tether.App(store_url, lease_seconds=2.0)

    @app.step
    async def research(company: str) -> dict[str, Any]:
        tether.current_step().add_usage(
            tether.Usage(llm_calls=1, input_tokens=2400, output_tokens=600, cost_usd=0.0042)
        )
        return {"company": company, "industry": "manufacturing"}

    @app.step
    async def send_email(to: str, decision: Any) -> str:
        return f"sent to {to} ({decision})"

    @app.workflow(name="outreach", version="3")
    async def outreach(ctx: tether.Context, company: str) -> dict[str, Any]:
        profile = await research(company)
        decision = await ctx.wait_for_signal("approval")
        receipt = await send_email(f"ceo@{company}.example", decision)
        return {"profile": profile, "decision": decision, "receipt": receipt}

    @app.workflow(name="digest")
    async def digest(ctx: tether.Context, companies: list[str]) -> list[dict[str, Any]]:
        return [await research(company) for company in companies]

    @app.workflow(name="broken")
    async def broken(ctx: tether.Context) -> None:
        await research("nobody")
        raise RuntimeError("search backend returned HTTP 503 three times")

    return app


class Worker:
    """A tether worker on its own thread and event loop."""

    def __init__(self, app: tether.App) -> None:
        self.app = app
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="e2e-worker", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def run() -> None:
            self._stop = asyncio.Event()
            self._ready.set()
            await self.app.run_worker_async(concurrency=10, stop=self._stop, grace_period=2)

        self._loop.run_until_complete(run())

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)


class Server:
    """uvicorn serving `create_app(app)` on 127.0.0.1 and a free port, on a thread."""

    def __init__(self, app: tether.App, auth: Auth | None = None) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(app, auth=auth or Auth(local_user="tester")), host="127.0.0.1",
            port=self.port, log_level="warning", proxy_headers=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="e2e-server", daemon=True)

    def start(self) -> None:
        self._thread.start()
        wait_until(lambda: self._server.started, 15, "the server did not start")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(15)


def wait_until(predicate: Callable[[], Any], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.02)


@contextlib.contextmanager
def dashboard(
    tmp_path: Path, make: Callable[[str], tether.App] = build, auth: Auth | None = None
) -> Iterator[tuple[str, tether.App]]:
    """A server and a worker on one fresh SQLite store, each with its own App made by `make`;
    yields the base URL and a third App to drive and inspect runs with. The server runs in
    local mode as ``tester`` unless `auth` says otherwise (principals in the store also end
    local mode)."""
    url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    client_app = make(url)
    worker_app = make(url)
    server = Server(make(url), auth)
    worker = Worker(worker_app)
    server.start()
    worker.start()
    try:
        yield server.url, client_app
    finally:
        server.stop()
        worker.stop()
        client_app.close()


def screenshot_dir(tmp_path: Path) -> Path:
    """Where screenshots go: $TETHER_SCREENSHOTS (to keep and look at them), else tmp_path."""
    target = Path(os.environ.get("TETHER_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target
