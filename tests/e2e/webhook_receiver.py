"""A local webhook for the alert end-to-end tests: records every POST, and can answer 500 to
the first attempts of each alert or hold the first attempt until the test lets it go."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    fail_first: int = 0
    """Answer 500 to this many attempts of each alert id before accepting it."""
    hold_first: bool = False
    """Keep the first attempt of each id unanswered until `release` is set (or 30 s)."""
    posts: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, body: dict[str, Any], headers: dict[str, str]) -> int:
        with self._lock:
            seen = sum(1 for p in self.posts if p["id"] == body["id"])
            self.posts.append({**body, "idempotency_key": headers.get("idempotency-key")})
        if self.hold_first and seen == 0:
            self.release.wait(30)
        return 500 if seen < self.fail_first else 200

    def by_id(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            found: dict[str, list[dict[str, Any]]] = {}
            for post in self.posts:
                found.setdefault(post["id"], []).append(post)
            return found


@contextmanager
def receiving(receiver: Receiver) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = receiver.record(body, headers)
            try:
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
            except OSError:  # the sender was killed while we held its request
                pass

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
