"""With only the standard OTEL_* settings, a script's `app.run()` exports its spans, and they
reach the collector although the script ends right after the run (flushed at exit)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.e2e.harness import process_env

SCRIPT = textwrap.dedent(
    """
    import sys
    import tether

    app = tether.App(sys.argv[1])

    @app.step
    async def fetch(url: str) -> str:
        return url.upper()

    @app.workflow
    async def hello(ctx: tether.Context, url: str) -> str:
        return await fetch(url)

    info = app.run("hello", {"url": "acme"})
    print(info.status)
    """
)


def test_a_script_exports_its_spans_with_only_the_standard_settings(tmp_path: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    names: list[str] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = ExportTraceServiceRequest()
            request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
            names.extend(span.name for rs in request.resource_spans
                         for ss in rs.scope_spans for span in ss.spans)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = tmp_path / "hello.py"
    script.write_text(SCRIPT)
    env = process_env()
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{server.server_port}"
    env["OTEL_SERVICE_NAME"] = "script"
    try:
        done = subprocess.run(
            [sys.executable, str(script), f"sqlite:///{tmp_path / 't.db'}"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "succeeded"
    # The process has exited: whatever reached the collector was flushed before it did.
    assert sorted(names) == ["invoke_workflow hello", "step fetch"], names
