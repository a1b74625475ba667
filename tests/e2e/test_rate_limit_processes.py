"""Agent runs on three worker processes against a fake provider that answers 429 above its
rate (counted at the server): the shared rate limit keeps every request under it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.harness import client, wait_until, worker_pool
from tests.fake_provider import FakeProvider

pytestmark = pytest.mark.timeout(240)


def test_no_request_is_answered_429(tmp_path: Path, store_url: str) -> None:
    with FakeProvider() as server:
        server.rate_limit = (5, 2.0)  # the provider's limit; the app's (5 per 3 s) is stricter
        os.environ["RATE_PROVIDER_URL"] = server.url
        try:
            with worker_pool(tmp_path, store_url) as workers:
                starter = client(store_url)
                ids = [starter.start("writer", {"prompt": f"line {i}"}).id for i in range(16)]
                for name in ("w1", "w2", "w3"):
                    workers.start(name, app="tests.e2e.rate_app:app")
                wait_until(lambda: all(starter.get_run(i).finished for i in ids), timeout=200,
                           what="every run to finish")
                infos = [starter.get_run(i) for i in ids]
        finally:
            os.environ.pop("RATE_PROVIDER_URL", None)
        assert server.rate_limited == 0
        assert len(server.requests) == 16
    assert all(info.status == "succeeded" for info in infos), [i.error for i in infos]
