"""`tether serve` as a user starts it: a real process, a real port, the store from --store."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import tether
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(60)


def test_tether_serve_serves_the_stores_runs(tmp_path: Path) -> None:
    missing = [m for m in ("tether.cli.runs", "tether.cli.worker") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the `tether` command needs {', '.join(missing)} (the CLI branch) to start")
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    client = tether.App(url)
    run_id = client.start("hello", {"who": "acme"}, labels={"team": "sales"}).id
    client.close()

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tether", "serve", "--store", url, "--port", str(port)],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                _, err = process.communicate(timeout=5)
                raise AssertionError(f"tether serve did not come up: {err.decode()}")
            time.sleep(0.05)
        runs = httpx.get(f"{base}/api/runs").json()["runs"]
        assert [(r["id"], r["status"], r["labels"]) for r in runs] == [
            (run_id, "queued", {"team": "sales"})
        ]
        assert run_id in httpx.get(f"{base}/runs").text
        # Bound to loopback, it answers to loopback names only (no DNS rebinding).
        rebound = httpx.get(f"{base}/api/runs", headers={"Host": f"rebind.example:{port}"})
        assert rebound.status_code == 421
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode is not None
