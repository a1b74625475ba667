"""`tether demo`: Titanium on the embedded store, with a worker killed mid-pipeline.

What it shows, in under a minute and without a network: node-by-node progress of a six-node
agent pipeline; its worker process SIGKILLed in the middle and a new one taking the run over;
how many model calls were *not* paid for twice (counted from the journal and from the model's
own call log); a human approval before the email is sent; tokens and cost per node.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tether.cli.common import cli, console, handle_errors, redact_url
from tether.errors import UserError

if TYPE_CHECKING:
    from tether.engine.records import RunInfo

LATENCY = 0.3
"""Seconds each scripted model call takes, so the pipeline runs long enough to be interrupted."""
LEASE = 2.0
"""The demo app's lease: a killed worker's run is taken over after about this long."""
KILL_AT_NODE = "case_studies"


@cli.command()
@handle_errors
def demo(
    company: str = typer.Option("Acme Robotics", help="The sample company to research"),
    db: Path = typer.Option(Path("tether-demo.db"), help="The SQLite file to create (replaced)"),
    yes: bool = typer.Option(False, "--yes", help="Approve the email without asking"),
) -> None:
    """Run the Titanium sales agent, crash its worker mid-pipeline, resume, approve, send."""
    import tether

    db = db.resolve()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    # The outbox (SQLite) sits next to the store; logs go to a scratch folder, so a demo run
    # in a checkout leaves only *.db files behind (ignored by git).
    scratch = Path(tempfile.mkdtemp(prefix="tether-demo-"))
    call_log = scratch / "model-calls.jsonl"
    outbox = db.parent / f"{db.stem}-outbox.db"
    outbox.unlink(missing_ok=True)
    store = f"sqlite:///{db}"
    env = {**os.environ, "TETHER_STORE": store, "TETHER_LEASE_SECONDS": str(LEASE),
           "TITANIUM_LATENCY": str(LATENCY), "TITANIUM_CALL_LOG": str(call_log),
           "TITANIUM_OUTBOX": str(outbox),
           "TETHER_DEMO_WORKER_LOG": str(scratch / "worker.log")}
    worker_log = Path(env["TETHER_DEMO_WORKER_LOG"])
    worker_log.unlink(missing_ok=True)
    offline = not os.environ.get("TETHER_MODEL")
    console.print(f"[bold]tether demo[/] — the Titanium sales agent on the embedded store "
                  f"[cyan]{db}[/]")
    console.print(f"  outbox: {outbox}", highlight=False)
    console.print(f"  model call log: {call_log}  (one line per request actually sent)",
                  highlight=False)
    console.print(f"  worker log: {worker_log}", highlight=False)
    console.print("  research → plan → case studies → select → draft (self-checked) → send "
                  "(needs approval)")
    console.print("  model: " + ("offline scripted model (no network; set TETHER_MODEL to use "
                                 "a real one)" if offline else os.environ["TETHER_MODEL"]))
    app = tether.App(store)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        first = _start_worker(env, workers)
        # Started as the demo's own scheduler, so that you (the OS user) may review its send:
        # nobody approves a run they started themselves.
        run_id = app.start("titanium", {"company": company}, started_by="tether-demo").id
        console.print(f"\nstarted run [cyan]{run_id}[/] for {company!r} on worker pid "
                      f"{first.pid}\n")
        progress = _Progress()
        # Let the pipeline get into the case-study search, then kill the worker outright. (A
        # real model may move on sooner: then kill wherever the run is, short of the end.)
        info = _wait(app, run_id, progress, first, worker_log, until=_kill_point)
        first.send_signal(signal.SIGKILL)
        first.wait()
        info = app.get_run(run_id)
        done_before = _model_steps(info)
        where = progress.node or "the pipeline"
        console.print(f"\n[bold red]✗ SIGKILL[/] worker pid {first.pid} in the middle of node "
                      f"{where!r} — {done_before} model calls were journaled before the crash")
        second = _start_worker(env, workers)
        console.print(f"started a new worker, pid {second.pid}; it takes the run over when the "
                      f"dead worker's lease expires (~{LEASE:.0f}s)\n")
        info = _wait(app, run_id, progress, second, worker_log, until=_paused_or_finished)
        if info.status == "waiting":  # the sender's send_email, held for review
            _approve_step(app, info, yes)
            info = _wait(app, run_id, progress, second, worker_log, until=_finished)
        console.print()
        _report(info, call_log, done_before, first.pid, outbox)
        # `./dev demo` sets the prefix, so the hint runs as printed from the project folder.
        cli_name = os.environ.get("TETHER_CLI_PREFIX") or "tether"
        console.print(f"\ninspect it:  [bold]{cli_name} show {run_id} --store {store}[/]",
                      soft_wrap=True)
        console.print(f"             [bold]{cli_name} runs --store {store}[/]", soft_wrap=True)
        console.print(f"             [bold]{cli_name} serve --store {store}[/]", soft_wrap=True)
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        app.close()


def _kill_point(info: RunInfo) -> bool:
    if info.status != "running" and info.steps:
        return True  # waiting for approval or ended: too late to interrupt the pipeline
    calls: dict[str, int] = {}
    for step in info.steps:
        if step.name.endswith(".model") and step.status == "completed":
            node = step.name.split(".")[0]
            calls[node] = calls.get(node, 0) + 1
    later = ("selector", "drafter", "sender")
    return calls.get(KILL_AT_NODE, 0) >= 2 or any(node in calls for node in later)


def _paused_or_finished(info: RunInfo) -> bool:
    return info.status == "waiting" or info.finished


def _finished(info: RunInfo) -> bool:
    return info.finished


def _start_worker(env: dict[str, str], workers: list[subprocess.Popen[bytes]]) -> Any:
    # A real worker process: `tether worker --app tether.examples.titanium:app`.
    import importlib.util

    if importlib.util.find_spec("tether.cli.worker") is not None:
        command = ["-m", "tether", "worker", "--app", "tether.examples.titanium:app",
                   "--log-level", "warning"]
    else:  # the same worker loop, for trees without the worker command
        command = ["-m", "tether.examples.titanium"]
    # Logs go to a file: a pipe nobody reads could fill up and stall the worker.
    log = open(env["TETHER_DEMO_WORKER_LOG"], "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([sys.executable, *command], env=env,
                            stdout=subprocess.DEVNULL, stderr=log)
    log.close()  # the child has its own descriptor
    workers.append(proc)
    return proc


def _check_alive(proc: subprocess.Popen[bytes], run_id: str, log: Path) -> None:
    if proc.poll() is not None:
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise UserError(f"the worker process exited ({proc.returncode}) before run {run_id} "
                        f"finished; its log:\n{detail}")


def _wait(app: Any, run_id: str, progress: _Progress, worker: subprocess.Popen[bytes],
          log: Path, until: Callable[[RunInfo], bool], timeout: float = 60.0) -> RunInfo:
    deadline = time.monotonic() + timeout
    while True:
        info: RunInfo = app.get_run(run_id)
        progress.show(info)
        if until(info):
            return info
        _check_alive(worker, run_id, log)
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} did not get there within {timeout:.0f}s "
                               f"(status {info.status}); inspect it with `{os.environ.get('TETHER_CLI_PREFIX') or 'tether'} show {run_id}`")
        time.sleep(0.05)


class _Progress:
    """Prints each journaled model and tool call once, grouped by node."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.node: str | None = None
        self.calls: dict[str, int] = {}
        self.recoveries = 0

    def show(self, info: Any) -> None:
        if info.recoveries > self.recoveries:
            self.recoveries = info.recoveries
            console.print(f"[bold green]↻ run taken over[/] by the new worker; replaying "
                          f"{len(self.seen)} journaled steps without executing them")
        for step in info.steps:
            if step.seq in self.seen or step.status != "completed":
                continue
            self.seen.add(step.seq)
            node = step.meta.get("tether.node")
            if node is None:
                continue
            if node != self.node:
                self.node = node
                console.print(f"[bold]▶ {node}[/]")
            if step.name.endswith(".model"):
                self.calls[node] = self.calls.get(node, 0) + 1
                console.print(f"    model call   {step.usage.tokens:>5} tokens")
            elif ".tool." in step.name:
                console.print(f"    tool         {step.name.split('.tool.', 1)[1]}"
                              f"({_brief(step.input)})")


def _approve_step(app: Any, info: Any, yes: bool) -> None:
    from tether.trust.render import render_approval

    console.print("\n[bold yellow]⏸ waiting for approval[/] — the run holds no worker while it "
                  "waits. The request a reviewer sees, with the run's context:\n")
    pending = [a for a in app.approvals() if a.run_id == info.id]
    if pending:
        console.print(render_approval(pending[0], command=os.environ.get("TETHER_CLI_PREFIX") or "tether",
                                      store=redact_url(app.store.url)), highlight=False)
    else:  # no trust layer record (a custom gate): show the draft itself
        _print_email(_draft(info))
    interactive = sys.stdin.isatty() and not yes
    if interactive:
        answer = typer.confirm("\nSend this email?", default=True)
    else:
        answer = True
        console.print("\n[dim](not a terminal or --yes: approving automatically)[/]")
    send_approval(app, info.id, approved=answer, reviewer=os.environ.get("USER", "demo"))
    console.print("approved ✓" if answer else "rejected ✗ — the agent is told why")


def send_approval(app: Any, run_id: str, *, approved: bool, reviewer: str) -> None:
    """Deliver the reviewer's decision through the trust layer's mechanism."""
    from tether.agents.review import decide_review

    decide_review(app, run_id, approved=approved, reviewer=reviewer,
                  reason=None if approved else "rejected in tether demo")


def _draft(info: Any) -> dict[str, Any]:
    for step in reversed(info.steps):
        if step.name == "drafter.model" and step.status == "completed":
            for part in step.output.get("parts", []):
                if part.get("tool_name") == "final_result":
                    args = part.get("args")
                    return json.loads(args) if isinstance(args, str) else dict(args or {})
    return {}


def _print_email(email: dict[str, Any]) -> None:
    console.print(f"  [bold]To:[/] {email.get('to', email.get('recipient', ''))}")
    console.print(f"  [bold]Subject:[/] {email.get('subject', '')}")
    for line in str(email.get("body", "")).splitlines():
        console.print(f"  {line}", highlight=False)


def _model_steps(info: Any) -> int:
    return sum(1 for s in info.steps if s.name.endswith(".model") and s.status == "completed")


def _report(info: RunInfo, call_log: Path, done_before: int, first_pid: int, outbox: Path) -> None:
    from rich.table import Table

    from tether.examples.titanium.pipeline import sent_emails

    if info.status != "succeeded":
        error: dict[str, Any] = info.error or {}
        console.print(f"[bold red]run ended {info.status}[/]: {error.get('message')}")
    calls = [json.loads(line) for line in call_log.read_text().splitlines()] \
        if call_log.exists() else []
    by_first = sum(1 for c in calls if c["pid"] == first_pid)
    by_second = len(calls) - by_first
    journaled = _model_steps(info)
    console.print(f"[bold green]✓ run {info.status}[/] after {info.recoveries} takeover(s)")
    console.print(
        f"  model calls journaled: {journaled}; actually sent: {len(calls)} "
        f"({by_first} by the killed worker, {by_second} by the new one)")
    console.print(
        f"  [bold]{done_before} model calls completed before the crash were not sent again[/]; "
        f"{max(0, by_first - done_before)} call(s) in flight at the kill were lost and re-sent")
    emails = sent_emails(str(outbox))
    for email in emails:
        console.print(f"  [bold]sent[/] {email['message_id']} to {email['recipient']}: "
                      f"{email['subject']!r} (outbox {outbox})", highlight=False)
    table = Table(title="\nper node", title_justify="left")
    for column in ("node", "model calls", "tool calls", "tokens", "cost"):
        table.add_column(column, justify="left" if column == "node" else "right")
    nodes: dict[str, list[Any]] = {}
    for step in info.steps:
        node = step.meta.get("tether.node")
        if node:
            nodes.setdefault(node, []).append(step)
    for node, steps in nodes.items():
        llm = sum(s.usage.llm_calls for s in steps)
        tools = sum(s.usage.tool_calls for s in steps)
        tokens = sum(s.usage.tokens for s in steps)
        cost = sum(s.usage.cost_usd for s in steps)
        unpriced = sum(s.usage.unpriced_calls for s in steps)
        shown = "unpriced" if unpriced and not cost else f"${cost:.5f}"
        table.add_row(node, str(llm), str(tools), str(tokens), shown)
    table.add_row("[bold]total[/]", str(info.usage.llm_calls), str(info.usage.tool_calls),
                  str(info.usage.tokens),
                  "unpriced" if info.usage.unpriced_calls and not info.usage.cost_usd
                  else f"${info.usage.cost_usd:.5f}")
    console.print(table)
    if info.usage.unpriced_calls:
        console.print("  [dim]some calls are unpriced (genai-prices does not know their model); "
                      "they are counted, never priced as zero[/]")
    elif not os.environ.get("TETHER_MODEL"):
        from tether.examples.titanium import PRICED_AS

        console.print(f"  [dim]the offline scripted model is priced at {PRICED_AS}'s rates "
                      "(genai-prices) for the tokens it used; real models are priced as each "
                      "call is recorded[/]")


def _brief(value: Any) -> str:
    text = json.dumps((value or {}), default=str)
    text = text[1:-1] if text.startswith("{") else text
    return text if len(text) <= 60 else text[:57] + "..."


if __name__ == "__main__":  # `python -m tether.cli.demo` while the CLI is being assembled
    cli()
