"""A bursting tenant against a per-key limit, served by two worker processes: no more of its
runs run at once than the limit, and the queue's global limit holds too."""

from __future__ import annotations

from pathlib import Path

import pytest

import tether
from tests.e2e.harness import client, wait_until, worker_pool

pytestmark = pytest.mark.timeout(240)


def test_a_bursting_tenant_stays_within_its_per_key_limit(tmp_path: Path, store_url: str) -> None:
    starter = tether.App(store_url)
    starter.queue("tenants", concurrency=4, per_key=2)
    ids = [starter.start("tenant_job", {"pause": 0.3}, queue="tenants",
                         labels={"tenant": "acme"}).id for _ in range(16)]
    ids += [starter.start("tenant_job", {"pause": 0.3}, queue="tenants",
                          labels={"tenant": tenant}).id for tenant in ("beta", "gamma")
            for _ in range(3)]
    with worker_pool(tmp_path, store_url) as workers:
        for name in ("w1", "w2"):
            workers.start(name, app="tests.e2e.queue_app:app", args=["--concurrency", "10"])
        observer = client(store_url)
        wait_until(lambda: all(observer.get_run(i).finished for i in ids), timeout=180,
                   what="every run to finish")
        infos = [observer.get_run(i) for i in ids]
    assert all(info.status == "succeeded" for info in infos), [i.error for i in infos]
    # Seen from inside each run, through the store: at most 2 of one tenant running, 4 in all.
    assert max(info.output["key"] for info in infos) <= 2
    assert max(info.output["all"] for info in infos) <= 4
