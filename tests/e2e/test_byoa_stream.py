"""A plain pydantic-ai agent — function tool, MCP toolset, a requires_approval tool, structured
output — on real `tether worker` processes, watched over SSE from a real `tether serve`: a
worker SIGKILLed mid-run is replaced, the SSE client reconnects with Last-Event-ID, and it
sees every completed event exactly once; the MCP server, the provider and the approved tool
each did their work once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import tether
from tests.conftest import free_port
from tests.e2e.harness import ROOT, Workers, process_env, wait_until
from tests.fake_provider import FakeProvider

APP = "tests.e2e.byoa_app:app"


def responder(request: dict[str, Any]) -> dict[str, Any]:
    """find_restaurant → get_weather (MCP) → book_table (MCP) → notify_guest → the booking."""
    called = [c["function"]["name"] for m in request["messages"]
              for c in (m.get("tool_calls") or [])]
    plan = [("find_restaurant", {"city": "Lyon"}), ("get_weather", {"city": "Lyon"}),
            ("book_table", {"restaurant": "Chez L", "people": 2}),
            ("notify_guest", {"message": "Table for 2 at Chez L"})]
    for name, args in plan:
        if name not in called:
            return {"content": f"next I will call {name}",
                    "tool_calls": [{"name": name, "arguments": args}]}
    return {"tool_calls": [{"name": "final_result",
                            "arguments": {"restaurant": "Chez L", "confirmed": True}}]}


class SSEWatcher:
    """Reads /api/runs/{id}/events in a thread; can drop the connection and resume it."""

    def __init__(self, base: str, run_id: str) -> None:
        self.url = f"{base}/api/runs/{run_id}/events"
        self.events: list[dict[str, Any]] = []
        self.connections = 0
        self.drop = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.done.is_set():
                headers = {"Last-Event-ID": str(self.events[-1]["id"])} if self.events else {}
                self.connections += 1
                with httpx.stream("GET", self.url, headers=headers, timeout=60) as response:
                    response.raise_for_status()
                    for line in response.iter_lines():
                        if line.startswith("data: "):
                            event = json.loads(line[6:])
                            self.events.append(event)
                            if event["kind"] == "finished":
                                self.done.set()
                                return
                        if self.drop.is_set():
                            self.drop.clear()
                            break  # reconnect with Last-Event-ID
        except BaseException as exc:
            self.error = exc
            self.done.set()


@pytest.mark.timeout(150)
def test_sse_stream_survives_a_takeover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = f"sqlite:///{tmp_path / 'stream.db'}"
    provider = FakeProvider(responder, latency=0.2).start()
    monkeypatch.setenv("BYOA_PROVIDER_URL", provider.url)
    monkeypatch.setenv("BYOA_LOGS", str(tmp_path))
    client = tether.App(store)
    workers = Workers(store, tmp_path / "ledger", tmp_path)
    port = free_port()
    serve_log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(
        [sys.executable, "-m", "tether", "serve", "--port", str(port), "--store", store],
        cwd=ROOT, env=process_env(), stdout=serve_log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    watcher: SSEWatcher | None = None
    try:
        workers.start("first", app=APP)
        run_id = client.start("concierge", {"prompt": "dinner in Lyon for 2"}).id
        wait_until(lambda: _up(base), timeout=30, what="tether serve to answer")
        watcher = SSEWatcher(base, run_id)
        watcher.thread.start()

        def model_steps(n: int) -> bool:
            return sum(1 for s in client.get_run(run_id).steps if "__model.request" in s.name
                       and s.status == "completed") >= n

        wait_until(lambda: model_steps(2), timeout=40, what="two journaled model requests")
        workers.kill("first")
        billed_at_kill = len(provider.requests)
        at_kill = client.get_run(run_id)
        watcher.drop.set()  # the watcher reconnects, resuming after the last event it saw
        workers.start("second", app=APP)
        approval = wait_until(lambda: client.approvals(), timeout=60,
                              what="the approval request")[0]
        assert approval.tool == "notify_guest" and approval.args == {
            "message": "Table for 2 at Chez L"}
        client.approve(approval.id, reviewer="maitre-d")
        output = tether.RunHandle(client, run_id).result(timeout=60)
        assert watcher.done.wait(30), "the SSE stream did not end with the run"
        info = client.get_run(run_id)
    except BaseException:
        print(workers.dump_logs(), (tmp_path / "serve.log").read_text(errors="replace"))
        raise
    finally:
        if watcher is not None:
            watcher.done.set()
        workers.stop_all()
        server.kill()
        server.wait(10)
        serve_log.close()
        provider.stop()

    assert watcher.error is None, watcher.error
    assert output == {"restaurant": "Chez L", "confirmed": True}
    assert info.status == "succeeded" and info.recoveries >= 1
    # The stream: ids increase, no event twice, every journaled step completed once in it.
    events = watcher.events
    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids)) and watcher.connections >= 2
    keyed = [(e["kind"], e["seq"]) for e in events if e["kind"] != "model_text_delta"]
    repeated = {k for k in keyed if keyed.count(k) > 1 and k[0] not in ("resumed", "suspended")}
    assert repeated == set()
    completed = {e["seq"] for e in events if e["kind"] == "step_completed"}
    assert completed == {s.seq for s in info.steps if s.kind == "step" and s.status == "completed"}
    kinds = {e["kind"] for e in events}
    assert {"tool_call", "model_text_delta", "approval_requested", "approval_decided",
            "suspended", "resumed", "finished"} <= kinds
    assert events[-1]["kind"] == "finished"
    # Nothing completed was done twice: provider billing, MCP server, the approved tool.
    done_models = sum(1 for s in at_kill.steps if "__model.request" in s.name
                      and s.status == "completed")
    assert billed_at_kill - done_models in (0, 1)
    journal_models = [s for s in info.steps if "__model.request" in s.name]
    assert len(provider.requests) - len(journal_models) in (0, 1)
    mcp = [json.loads(x) for x in (tmp_path / "mcp_calls.jsonl").read_text().splitlines()]
    assert sorted(c["tool"] for c in mcp) in (["book_table", "get_weather"],
                                               ["book_table", "get_weather", "get_weather"])
    assert [c["tool"] for c in mcp].count("book_table") == 1
    notified = (tmp_path / "notified.jsonl").read_text().splitlines()
    assert [json.loads(n)["message"] for n in notified] == ["Table for 2 at Chez L"]


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/api/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        time.sleep(0.05)
        return False
