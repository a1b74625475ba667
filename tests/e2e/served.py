"""`tether serve` as a real process on a free loopback port, for the authentication tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from tests.conftest import free_port


@dataclass
class Served:
    """A running `tether serve`: its base URL and process."""

    base: str
    process: subprocess.Popen[bytes]

    def client(
        self, token: str | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Client:
        """An HTTP client for this server, with a bearer token when given."""
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.base, headers=headers, timeout=10)


def tether_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the `tether` command in a subprocess, as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "tether", *args], capture_output=True, text=True,
        env=os.environ.copy(), timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"tether {' '.join(args)} failed: {result.stderr}")
    return result


@contextmanager
def serve(store_url: str, *extra: str, app: str | None = None) -> Iterator[Served]:
    """`tether serve --store URL` on 127.0.0.1 until the block ends."""
    port = free_port()
    command: Sequence[str] = [
        sys.executable, "-m", "tether", "serve", "--store", store_url, "--port", str(port), *extra,
    ]
    if app is not None:
        command = [*command, "--app", app]
    process = subprocess.Popen(
        command, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                _, err = process.communicate(timeout=5)
                raise AssertionError(f"tether serve did not come up: {err.decode()}")
            time.sleep(0.05)
        yield Served(base, process)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
