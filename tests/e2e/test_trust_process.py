"""An approved email is delivered once, with the approved text, when the worker executing the
send is SIGKILLed after the email went out but before the step was journaled — with real
`tether worker` processes on one SQLite file, a mail service over real HTTP that dedupes by
idempotency key, and the reviewer deciding with `tether approvals` / `tether approve` from
another process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import tether

APP_SOURCE = textwrap.dedent(
    '''
    """Worker process for the trust e2e test: the send tool posts to a mail service, then
    blocks until released (the window between the effect and its journal entry)."""
    import json
    import os
    import pathlib
    import time
    import urllib.request

    import tether
    from tether.observe.names import TOOL_NAME
    from tether.trust.gate import ToolCallRequest, authorize

    DIR = pathlib.Path(os.environ["TRUST_E2E_DIR"])
    MAIL_URL = os.environ["TRUST_E2E_MAIL_URL"]
    SCHEMA = {"type": "object", "properties": {"to": {"type": "string"},
              "body": {"type": "string", "minLength": 1}}, "required": ["to", "body"]}
    app = tether.App(os.environ["TRUST_E2E_STORE"], lease_seconds=1.0,
                     policy=tether.Policy({"send": "review"}))


    def send_email(to: str, body: str) -> str:
        # The mail service applies one email per idempotency key: the key is what makes a
        # re-run of this step after a crash harmless.
        ctx = tether.current_step()
        request = urllib.request.Request(
            MAIL_URL, data=json.dumps({"to": to, "body": body}).encode(), method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": ctx.idempotency_key,
                     "X-Sender-Pid": str(os.getpid())})
        with urllib.request.urlopen(request, timeout=10) as response:
            receipt = json.load(response)
        # The email is out, but the step's result is not journaled yet: announce it and wait,
        # so the test can kill the worker inside this window.
        (DIR / f"sent-{os.getpid()}").write_text(json.dumps(receipt))
        while not (DIR / "release").exists():
            time.sleep(0.02)
        return receipt["id"]


    @app.workflow
    async def outreach(ctx: tether.Context, to: str, body: str) -> dict:
        auth = await authorize(ctx, ToolCallRequest(
            agent="drafter", tool="send_email", risk="send",
            args={"to": to, "body": body}, args_schema=SCHEMA))
        if auth.decision != "run":
            return {"decision": auth.decision, "reason": auth.reason}
        result = await ctx.run_step("send_email", send_email, kwargs=auth.args,
                                    meta={TOOL_NAME: "send_email"})
        return {"result": result, "args": auth.args, "reviewer": auth.reviewer}

    '''
)


@dataclass
class MailService:
    """A fake outside mail service over real HTTP: it delivers one email per idempotency key,
    as a real provider's idempotent send API does, and remembers every request."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    delivered: dict[str, dict[str, Any]] = field(default_factory=dict[str, dict[str, Any]])


@pytest.fixture
def mail() -> Iterator[MailService]:
    lock = threading.Lock()
    service = MailService(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            key = self.headers.get("Idempotency-Key") or ""
            with lock:
                service.requests.append(
                    {**payload, "key": key, "pid": int(self.headers["X-Sender-Pid"])}
                )
                slot = key or f"unkeyed-{len(service.requests)}"  # no key: no protection
                if slot not in service.delivered:
                    service.delivered[slot] = {**payload, "id": f"msg-{len(service.delivered) + 1}"}
                body = json.dumps({"id": service.delivered[slot]["id"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    service.url = f"http://127.0.0.1:{server.server_address[1]}/send"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield service
    server.shutdown()
    server.server_close()


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def tether_cli(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `tether …` as its own process against the test's store; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-m", "tether", *args, "--store", f"sqlite:///{workdir / 'tether.db'}"],
        cwd=workdir, capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "trust_e2e_app.py").write_text(APP_SOURCE)
    return tmp_path


@pytest.fixture
def start_worker(
    workdir: Path, mail: MailService
) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "TRUST_E2E_DIR": str(workdir),
        "TRUST_E2E_STORE": f"sqlite:///{workdir / 'tether.db'}",
        "TRUST_E2E_MAIL_URL": mail.url,
    }

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tether", "worker", "--app", "trust_e2e_app:app",
             "--concurrency", "4"],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / f"worker-{len(started)}.log", "wb"),  # noqa: SIM115
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_sigkill_after_the_send_before_its_journal_entry_sends_once(
    workdir: Path, start_worker: Callable[[], subprocess.Popen[bytes]], mail: MailService
) -> None:
    """The at-least-once window: the approved email has gone out, and the worker dies before
    the step's result is journaled. The resumed run sends again with the same idempotency key;
    the mail service applies it once. The approved (edited) text is what goes out."""
    client = tether.App(f"sqlite:///{workdir / 'tether.db'}")
    first = start_worker()
    run = client.start("outreach", {"to": "ceo@acme.com", "body": "Draft with a typo"})

    # The request is stored by the gate step just before the run suspends: no worker holds it.
    wait_until(lambda: client.get_run(run.id).status == "waiting", "the run to suspend")
    assert client.get_run(run.id).lease_owner is None
    # The reviewer works from another process, with the CLI.
    listed = tether_cli(workdir, "approvals", "--json")
    (request,) = json.loads(listed.stdout)
    assert (request["run_id"], request["tool"], request["args"]["body"]) == (
        run.id, "send_email", "Draft with a typo")
    decided = tether_cli(workdir, "approve", request["id"], "--as", "alice",
                         "--edit", '{"body": "Approved final text"}')
    assert "with edits to body" in decided.stdout
    approval = client.get_approval(request["id"])

    # The first worker sends the email, then dies before the step is journaled.
    wait_until((workdir / f"sent-{first.pid}").exists, "the first worker to send the email")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert [(r["body"], r["pid"]) for r in mail.requests] == [("Approved final text", first.pid)]
    killed = client.get_run(run.id)
    assert "send_email" not in [s.name for s in killed.steps if s.status == "completed"]

    # The run is taken over and the step runs again: a second request to the mail service.
    (workdir / "release").write_text("go")
    second = start_worker()
    output = run.result(timeout=30)

    info = client.get_run(run.id)
    (send,) = [s for s in info.steps if s.name == "send_email"]
    key = f"{run.id}:{send.seq}"
    assert list(mail.delivered.values()) == [
        {"to": "ceo@acme.com", "body": "Approved final text", "id": "msg-1"}
    ], "the re-run step delivered a second email"
    # Sent twice (once by each worker), with one key: the run's id and the step's number.
    assert [(r["key"], r["pid"]) for r in mail.requests] == [(key, first.pid), (key, second.pid)]
    assert output["result"] == "msg-1"
    assert output["args"] == {"to": "ceo@acme.com", "body": "Approved final text"}
    assert output["reviewer"] == "alice"
    assert info.recoveries == 1
    waits = [s for s in info.steps if s.kind == "signal"]
    assert [(s.name, s.status) for s in waits] == [(f"approval:{approval.id}", "completed")]
    decided = client.get_approval(approval.id)
    assert (decided.status, decided.edited, decided.decided_by) == ("approved", True, "alice")
    client.close()
