"""With only the standard OTEL_* settings, a script's `app.run()` exports its spans, and they
reach the collector although the script ends right after the run (flushed at exit)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.e2e.harness import process_env
from tests.observe_fakes import otlp_collector, span_names

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
    script = tmp_path / "hello.py"
    script.write_text(SCRIPT)
    env = process_env()
    env["OTEL_SERVICE_NAME"] = "script"
    with otlp_collector() as (endpoint, received):
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
        done = subprocess.run(
            [sys.executable, str(script), f"sqlite:///{tmp_path / 't.db'}"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )
    names = span_names(received)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "succeeded"
    # The process has exited: whatever reached the collector was flushed before it did.
    assert sorted(names) == ["invoke_workflow hello", "step fetch"], names
