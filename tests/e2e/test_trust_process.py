"""An approved email is sent once, with the approved text, when the worker executing it is
SIGKILLed between the approval and the send — with real `tether worker` processes on one SQLite
file, and the reviewer deciding with `tether approvals` / `tether approve` from another process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tether

APP_SOURCE = textwrap.dedent(
    '''
    """Worker process for the trust e2e test: the send tool blocks until released."""
    import json
    import os
    import pathlib
    import time

    import tether
    from tether.observe.names import TOOL_NAME
    from tether.trust.gate import ToolCallRequest, authorize

    DIR = pathlib.Path(os.environ["TRUST_E2E_DIR"])
    SCHEMA = {"type": "object", "properties": {"to": {"type": "string"},
              "body": {"type": "string", "minLength": 1}}, "required": ["to", "body"]}
    app = tether.App(os.environ["TRUST_E2E_STORE"], lease_seconds=1.0,
                     policy=tether.Policy({"send": "review"}))


    def send_email(to: str, body: str) -> str:
        # Announce that the tool started in this process, then wait for the test to release it,
        # so the test can kill the worker after the approval but before the email goes out.
        (DIR / f"started-{os.getpid()}").write_text(json.dumps({"to": to, "body": body}))
        while not (DIR / "release").exists():
            time.sleep(0.02)
        with (DIR / "outbox.jsonl").open("a") as outbox:
            outbox.write(json.dumps({"to": to, "body": body, "pid": os.getpid()}) + "\\n")
        return f"sent to {to}"


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
def start_worker(workdir: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "TRUST_E2E_DIR": str(workdir),
        "TRUST_E2E_STORE": f"sqlite:///{workdir / 'tether.db'}",
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


def test_sigkill_between_approval_and_send_sends_once_with_the_approved_text(
    workdir: Path, start_worker: Callable[[], subprocess.Popen[bytes]]
) -> None:
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

    # The worker picks the run up and starts the send with the approved text; kill it there.
    marker = workdir / f"started-{first.pid}"
    wait_until(marker.exists, "the first worker to start the send")
    assert json.loads(marker.read_text())["body"] == "Approved final text"
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert not (workdir / "outbox.jsonl").exists()

    second = start_worker()
    wait_until((workdir / f"started-{second.pid}").exists, "the second worker to take over")
    (workdir / "release").write_text("go")
    output = run.result(timeout=30)

    sent = [json.loads(line) for line in (workdir / "outbox.jsonl").read_text().splitlines()]
    assert sent == [{"to": "ceo@acme.com", "body": "Approved final text", "pid": second.pid}]
    assert output["args"] == {"to": "ceo@acme.com", "body": "Approved final text"}
    assert output["reviewer"] == "alice"
    info = client.get_run(run.id)
    assert info.recoveries == 1
    waits = [s for s in info.steps if s.kind == "signal"]
    assert [(s.name, s.status) for s in waits] == [(f"approval:{approval.id}", "completed")]
    decided = client.get_approval(approval.id)
    assert (decided.status, decided.edited, decided.decided_by) == ("approved", True, "alice")
    client.close()
