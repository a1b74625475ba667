"""A degrading pipeline under SIGKILL: a worker process dies after an optional node was skipped
and a primary node failed over to its backup, while the backup's model request is in flight.
The replacement worker re-runs nothing already decided: the skipped node and the failed primary
get no new model request; only the in-flight request is sent again.

This module is also the workers' app (``tests.e2e.test_degrade_crash:app``); its models are
pydantic-ai's real OpenAI client pointed at a local fake provider (`DEGRADE_PROVIDER`) that
runs in the test process and counts every request per node, out of the workers' reach.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import tether
from tests.e2e.harness import client, wait_until, worker_pool
from tests.fake_provider import Fault, running
from tether import Agent, Fallback, Optional, Sequential


def _model(name: str) -> Any:
    from openai import AsyncOpenAI
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    url = os.environ.get("DEGRADE_PROVIDER", "http://127.0.0.1:9/v1")
    openai_client = AsyncOpenAI(base_url=url, api_key="test-key", max_retries=0)
    return OpenAIChatModel(name, provider=OpenAIProvider(openai_client=openai_client))


def _agent(node: str) -> Agent:
    # A 400 is not retried: the node fails at once, which keeps the test's fault script simple.
    return Agent(node, _model("gpt-4o-mini"), f"node:{node}", output_retries=0,
                 retry=tether.Retry(max_attempts=1))


pipeline = Sequential("degrading", [
    _agent("research"),
    Optional(_agent("case_studies"), default=[]),
    Fallback(_agent("drafter"), _agent("drafter_plain")),
    _agent("review"),
])
app = tether.App(os.environ.get("DEGRADE_STORE"), lease_seconds=2.0)
app.register(pipeline)


def _node_of(body: dict[str, Any]) -> str:
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str) and content.startswith("node:"):
            return content.removeprefix("node:")
    return "?"


def test_degraded_decisions_survive_a_worker_kill(tmp_path: Path, store_url: str) -> None:
    hung: list[str] = []

    def fault_for(body: dict[str, Any]) -> Fault | None:
        node = _node_of(body)
        if node in ("case_studies", "drafter"):
            return Fault("400", message=f"{node} rejected")
        if node == "drafter_plain" and not hung:
            hung.append(node)  # the first backup request hangs until its worker is killed
            return Fault("hang", seconds=120)
        return None

    with running(lambda body: {"content": f"{_node_of(body)} ok"}) as provider, \
            worker_pool(tmp_path, store_url) as workers:
        provider.fault_for = fault_for
        os.environ.update(DEGRADE_PROVIDER=provider.url, DEGRADE_STORE=store_url)
        observer = client(store_url)
        try:
            handle = observer.start("degrading", {"company": "Acme"})
            workers.start("w1", app="tests.e2e.test_degrade_crash:app")
            wait_until(lambda: hung, timeout=60, what="the backup's request to be in flight")
            workers.kill("w1")
            workers.start("w2", app="tests.e2e.test_degrade_crash:app")
            info = wait_until(lambda: _finished(observer, handle.id), timeout=60,
                              what="the run to finish on the second worker")
        finally:
            os.environ.pop("DEGRADE_PROVIDER", None)
            os.environ.pop("DEGRADE_STORE", None)

    assert info.status == "succeeded", info.error
    sent = Counter(_node_of(body) for body in provider.requests)
    # Decided before the kill, never asked again: research answered, case_studies skipped,
    # drafter failed over. Only the backup's in-flight request was sent twice.
    assert sent == Counter({"research": 1, "case_studies": 1, "drafter": 1,
                            "drafter_plain": 2, "review": 1}), sent
    assert [d["node"] for d in info.degraded] == ["case_studies", "drafter"]
    assert info.output["case_studies"] == []
    assert info.output["drafter"] == "drafter_plain ok"
    assert info.recoveries >= 1


def _finished(observer: tether.App, run_id: str) -> tether.RunInfo | None:
    info = observer.get_run(run_id)
    return info if info.finished else None
