"""The `tether` commands in-process (Typer's CliRunner) against a real SQLite file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import tether
from tether.access.principals import login_name
from tether.cli import audit as _audit  # noqa: F401 - registers the commands
from tether.cli import common
from tether.cli import runs as _runs  # noqa: F401
from tether.cli import tokens as _tokens  # noqa: F401
from tether.cli import trust as _trust  # noqa: F401
from tether.cli import worker as _worker  # noqa: F401
from tether.cli.common import cli


@pytest.fixture
def app(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tether.App]:
    # `--store` sets $TETHER_STORE for the process; monkeypatch restores it afterwards.
    monkeypatch.delenv("TETHER_STORE", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    # The CLI's console read $COLUMNS when it was made, if set then (pytest-xdist's workers have
    # COLUMNS=80): unset its width so it reads the 200 above.
    monkeypatch.setattr(common.console, "_width", None)
    app = tether.App(sqlite_url)

    @app.step(name="fetch")
    async def fetch(who: str) -> str:
        return f"page of {who}"

    attempts = {"n": 0}

    @app.step(name="flaky", retry=tether.Retry(max_attempts=2, initial_delay=0.001))
    async def flaky(who: str) -> str:
        attempts["n"] += 1
        raise RuntimeError(f"search backend down for {who}")

    @app.workflow(name="greet", version="3")
    async def greet(ctx: tether.Context, who: str) -> dict[str, Any]:
        return {"page": await fetch(who)}

    @app.workflow
    async def doomed(ctx: tether.Context, who: str) -> str:
        await fetch(who)
        return await flaky(who)

    @app.workflow
    async def approval(ctx: tether.Context, who: str) -> Any:
        await fetch(who)
        return await ctx.wait_for_signal("approval")

    @app.workflow
    async def family(ctx: tether.Context, who: str) -> Any:
        return await ctx.run_child("approval", {"who": who})

    app.list_runs()  # creates the store file, as the first start would
    yield app
    app.close()


def invoke(app: tether.App, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--store", app.store.url])


def test_runs_lists_newest_first_as_json(app: tether.App) -> None:
    first = app.run("greet", {"who": "acme"}, labels={"team": "sales"})
    second = app.run("approval", {"who": "globex"})
    result = invoke(app, "runs", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [r["id"] for r in listed] == [second.id, first.id]
    assert listed[1]["status"] == "succeeded"
    assert listed[1]["workflow"] == "greet"
    assert listed[1]["version"] == "3"
    assert listed[1]["labels"] == {"team": "sales"}
    assert listed[1]["steps"] == 1
    assert listed[0]["status"] == "waiting"
    assert listed[0]["waiting_for"] == "approval"


def test_runs_filters_by_status_workflow_and_label(app: tether.App) -> None:
    done = app.run("greet", {"who": "a"}, labels={"team": "sales"})
    app.run("greet", {"who": "b"}, labels={"team": "ops"})
    waiting = app.run("approval", {"who": "c"})

    def ids(*args: str) -> list[str]:
        result = invoke(app, "runs", "--json", *args)
        assert result.exit_code == 0, result.output
        return [r["id"] for r in json.loads(result.stdout)]

    assert ids("--status", "waiting") == [waiting.id]
    assert len(ids("--workflow", "greet")) == 2
    assert ids("--label", "team=sales") == [done.id]
    assert len(ids("--limit", "1")) == 1


def test_runs_table_shows_status_and_what_a_run_waits_for(app: tether.App) -> None:
    waiting = app.run("approval", {"who": "c"})
    result = invoke(app, "runs")
    assert result.exit_code == 0, result.output
    assert waiting.id in result.stdout
    assert "approval@1" in result.stdout
    assert "signal 'approval'" in result.stdout


def test_show_renders_the_journal(app: tether.App) -> None:
    info = app.run("doomed", {"who": "initech"}, labels={"team": "sales"})
    assert info.status == "failed"
    result = invoke(app, "show", info.id)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert info.id in out
    assert "doomed@1" in out
    assert "failed" in out
    assert "team=sales" in out
    lines = out.splitlines()
    fetch_row = next(line for line in lines if " fetch " in line)
    assert fetch_row.split()[:5] == ["1", "fetch", "step", "completed", "1"]
    flaky_row = next(line for line in lines if " flaky " in line)
    # seq, status, attempts and the error are all on the step's row.
    assert flaky_row.split()[:5] == ["2", "flaky", "step", "failed", "2"]
    assert "RuntimeError: search backend down for initech" in flaky_row
    assert f"(traceback: tether show {info.id} --json)" in out


def test_listings_leave_tracebacks_to_show(app: tether.App) -> None:
    info = app.run("doomed", {"who": "initech"})
    [listed] = json.loads(invoke(app, "runs", "--json").stdout)
    assert listed["error"]["type"] == "StepFailed"
    assert "traceback" not in listed["error"]
    shown = json.loads(invoke(app, "show", info.id, "--json").stdout)
    assert "search backend down" in shown["error"]["traceback"]


def test_show_json_has_the_journal(app: tether.App) -> None:
    info = app.run("greet", {"who": "acme"})
    result = invoke(app, "show", info.id, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["id"] == info.id
    assert shown["status"] == "succeeded"
    assert shown["input"] == {"who": "acme"}
    assert shown["output"] == {"page": "page of acme"}
    [step] = shown["journal"]
    assert step["seq"] == 1
    assert step["name"] == "fetch"
    assert step["status"] == "completed"
    assert step["attempts"] == 1
    assert step["output"] == "page of acme"
    assert step["duration_s"] >= 0


def test_show_waiting_run_says_what_it_waits_for(app: tether.App) -> None:
    info = app.run("approval", {"who": "acme"})
    result = invoke(app, "show", info.id)
    assert result.exit_code == 0, result.output
    assert "waiting for" in result.stdout
    assert "signal 'approval'" in result.stdout


def test_signal_resumes_a_waiting_run(app: tether.App) -> None:
    info = app.run("approval", {"who": "acme"})
    result = invoke(app, "signal", info.id, "approval", "--data", '{"approved": true}')
    assert result.exit_code == 0, result.output
    assert "now queued" in result.stdout
    done = app.run("approval", {"who": "acme"}, run_id=info.id)
    assert done.status == "succeeded"
    assert done.output == {"approved": True}
    signal_row = next(line for line in invoke(app, "show", info.id).stdout.splitlines()
                      if " approval " in line and " signal " in line)
    assert signal_row.split()[:4] == ["2", "approval", "signal", "completed"]
    assert '{"approved": true}' in signal_row


def test_cancel_a_waiting_run(app: tether.App) -> None:
    info = app.run("approval", {"who": "acme"})
    result = invoke(app, "cancel", info.id, "--reason", "customer churned")
    assert result.exit_code == 0, result.output
    assert f"run {info.id} cancelled" in result.stdout
    cancelled = app.get_run(info.id)
    assert cancelled.status == "cancelled"
    again = invoke(app, "cancel", info.id)
    assert "already ended (cancelled)" in again.stdout


def test_cancel_says_it_cancelled_the_children_too(app: tether.App) -> None:
    parent = app.run("family", {"who": "acme"})  # waits for its child, which nobody runs
    result = invoke(app, "cancel", parent.id)
    assert result.exit_code == 0, result.output
    assert f"run {parent.id} cancelled, with its 1 unfinished child run" in result.stdout
    assert app.get_run(f"{parent.id}.1").status == "cancelled"


def test_fork_reuses_the_journal_before_the_step(app: tether.App) -> None:
    source = app.run("doomed", {"who": "acme"})
    result = invoke(app, "fork", source.id, "--from-step", "2")
    assert result.exit_code == 0, result.output
    new_id = result.stdout.strip()
    forked = app.get_run(new_id)
    assert forked.parent_id == source.id
    assert forked.status == "queued"
    assert [(s.seq, s.name) for s in forked.steps] == [(1, "fetch")]


def test_start_queues_a_run_with_input_and_labels(app: tether.App) -> None:
    result = invoke(
        app, "start", "greet", "--input", '{"who": "acme"}', "--label", "team=sales",
        "-l", "tenant=acme", "--run-id", "my-run-1",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "my-run-1"
    info = app.get_run("my-run-1")
    assert info.status == "queued"
    assert info.input == {"who": "acme"}
    assert info.labels == {"team": "sales", "tenant": "acme"}
    assert info.version is None  # started by name; the first worker that has it pins it
    # Starting again with the same id is idempotent.
    again = invoke(app, "start", "greet", "--input", '{"who": "acme"}', "--run-id", "my-run-1")
    assert again.stdout.strip() == "my-run-1"
    assert len(app.list_runs()) == 1


def test_store_defaults_to_the_environment(
    app: tether.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = app.run("greet", {"who": "acme"})
    monkeypatch.setenv("TETHER_STORE", app.store.url)
    result = CliRunner().invoke(cli, ["runs", "--json"])
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(result.stdout)] == [info.id]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "no run with id 'nope'"),
        (["signal", "nope", "approval"], "no run with id 'nope'"),
        (["cancel", "nope"], "no run with id 'nope'"),
        (["fork", "nope", "--from-step", "1"], "no run with id 'nope'"),
        (["start", "greet", "--input", "{who: acme}"], "--input is not valid JSON"),
        (["start", "greet", "--input", "[1, 2]"], "--input must be a JSON object"),
        (["start", "greet", "--label", "team"], "bad label 'team': expected key=value"),
        (["runs", "--status", "lost"], "unknown status 'lost'"),
        (["start", "greet", "--app", "nodots"], "must look like package.module:app"),
        (["start", "greet", "--app", "no.such.module:app"], "cannot import 'no.such.module'"),
        (["start", "nope", "--app", "tests.e2e.workflows_fixture:app"], "unknown workflow 'nope'"),
        (["start", "greet", "--app", "tether:Retry"], "is not a tether.App"),
    ],
)
def test_errors_are_one_clear_line_with_exit_code_2(
    app: tether.App, args: list[str], message: str
) -> None:
    result = invoke(app, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_signal_with_bad_json_or_to_an_ended_run(app: tether.App) -> None:
    waiting = app.run("approval", {"who": "acme"})
    bad = invoke(app, "signal", waiting.id, "approval", "--data", "{oops")
    assert bad.exit_code == 2
    assert "--data is not valid JSON" in bad.stderr
    done = app.run("greet", {"who": "acme"})
    late = invoke(app, "signal", done.id, "approval")
    assert late.exit_code == 2
    assert f"run {done.id} already ended (succeeded)" in late.stderr


def test_worker_options_are_checked_before_it_starts(app: tether.App) -> None:
    bad_level = invoke(app, "worker", "--app", "tests.e2e.workflows_fixture:app", "--log-level", "loud")
    assert bad_level.exit_code == 2
    assert "--log-level 'loud' is not a level" in bad_level.stderr
    no_app = invoke(app, "worker")
    assert no_app.exit_code == 2
    assert "--app" in no_app.stderr


def test_show_says_what_a_queued_run_needs(app: tether.App) -> None:
    by_name = invoke(app, "start", "greet", "--input", '{"who": "a"}').stdout.strip()
    pinned = app.start("greet", {"who": "b"}).id
    shown = invoke(app, "show", by_name).stdout
    assert "next free worker that has greet (any version)" in shown
    assert "journal: no steps yet" in shown
    assert "next free worker that has greet@3" in invoke(app, "show", pinned).stdout


def test_reading_a_store_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    for args in (["runs"], ["show", "abc"], ["signal", "abc", "go"]):
        result = CliRunner().invoke(cli, [*args, "--store", f"sqlite:///{missing}"])
        assert result.exit_code == 2
        assert f"no tether store at {missing}" in result.stderr
    assert not missing.exists()  # and no empty database was left behind


def test_a_reserved_signal_name_says_what_to_do(app: tether.App) -> None:
    waiting = app.run("approval", {"who": "globex"})
    for name, advice in (("tether.child.x", "a name of your own"), ("tether.budget", "tether budget")):
        result = invoke(app, "signal", waiting.id, name, "--data", "{}")
        assert result.exit_code == 2, result.output
        line = result.stderr.strip()
        assert line.startswith("error: signal names starting with 'tether.' are reserved"), line
        assert advice in line and not line.endswith(";"), line
    assert app.get_run(waiting.id).status == "waiting"


@pytest.mark.parametrize(
    "args",
    [
        ["approvals"],
        ["approve", "req-1", "--as", "rita"],
        ["reject", "req-1", "--reason", "no", "--as", "rita"],
        ["trust"],
        ["tokens", "list"],
        ["tokens", "revoke", "rita"],
    ],
    ids=lambda args: "-".join(args[:2]),
)
def test_approval_trust_and_token_commands_refuse_a_store_that_does_not_exist(
    tmp_path: Path, args: list[str]
) -> None:
    # A typo in --store must not leave an empty database behind and answer "none" from it.
    missing = tmp_path / "typo.db"
    result = CliRunner().invoke(cli, [*args, "--store", f"sqlite:///{missing}"])
    assert result.exit_code == 2, result.output
    assert f"no tether store at {missing}" in result.stderr
    assert not missing.exists()


def test_runs_and_show_say_a_run_whose_worker_vanished_is_stuck(app: tether.App) -> None:
    import time

    from tether.store.base import NewRun

    async def abandoned() -> str:
        # A worker claims the run with a short lease, reports its step, then goes silent.
        store = app.store
        await store.create_run(NewRun(id="r-stuck", workflow="greet", version="3", input={"who": "x"}))
        claim = (await store.claim_runs("gone-worker", [("greet", "3")], limit=1, lease_seconds=0.05))[0]
        progress = {"seq": 1, "name": "fetch", "kind": "step", "node": None, "started_at": time.time()}
        await store.heartbeat("gone-worker", 0.05, {claim.run.id: progress})
        return claim.run.id

    run_id = app.portal.run(abandoned())
    expires = app.get_run(run_id).lease_expires
    assert expires is not None
    while time.time() <= expires.timestamp():  # the lease lapses; no worker takes the run over
        time.sleep(0.01)
    listed = json.loads(invoke(app, "runs", "--json").stdout)
    health = next(r["health"] for r in listed if r["id"] == run_id)
    assert health["verdict"] == "stuck"
    assert "heartbeat" in health["reason"]
    shown = invoke(app, "show", run_id)
    assert shown.exit_code == 0, shown.output
    assert "stuck" in shown.stdout


def test_start_records_who_started_the_run(app: tether.App) -> None:
    result = invoke(app, "start", "greet", "--input", '{"who": "acme"}', "--as", "dana")
    assert result.exit_code == 0, result.output
    info = app.get_run(result.stdout.strip())
    assert info.started_by == "dana"
    assert "tether.started_by" not in info.labels  # tether's own label is not a user label


def test_start_without_user_still_records_the_os_login(
    app: tether.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # $USER unset used to record no starter at all, so anyone could approve the run.
    for name in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    result = invoke(app, "start", "greet", "--input", '{"who": "acme"}')
    assert result.exit_code == 0, result.output
    info = app.get_run(result.stdout.strip())
    assert info.started_by == login_name() and info.started_by
    shown = json.loads(invoke(app, "show", info.id, "--json").stdout)
    assert shown["started_by"] == info.started_by
    assert not any(key.startswith("tether.") for key in shown["labels"])


def test_cli_mutations_are_in_the_audit_trail(app: tether.App) -> None:
    waiting = app.run("approval", {"who": "acme"})
    assert invoke(app, "signal", waiting.id, "nudge").exit_code == 0
    assert invoke(app, "cancel", waiting.id, "--reason", "duplicate").exit_code == 0
    assert invoke(app, "signal", waiting.id, "late").exit_code == 2  # refused: not recorded
    started = invoke(app, "start", "greet", "--input", '{"who": "x"}', "--as", "dana")
    assert started.exit_code == 0, started.output
    result = invoke(app, "audit", "--json")
    assert result.exit_code == 0, result.output
    trail = [(e["principal"], e["action"], e["target"], e["outcome"], e["via"])
             for e in reversed(json.loads(result.stdout))]
    me = login_name()
    assert trail == [
        (me, "run.signal", waiting.id, "ok", "cli"),
        (me, "run.cancel", waiting.id, "ok", "cli"),
        ("dana", "run.start", started.stdout.strip(), "ok", "cli"),
    ]


def test_text_from_api_clients_is_printed_literally(app: tether.App) -> None:
    # Run ids, labels and audit targets come from API clients (an operator picks a run id, a
    # viewer the path of a refused request). Printed as Rich markup, "[/bold]" made `tether
    # runs`, `show` and `audit` crash for everyone, and an escape sequence reached the terminal.
    from tether.access.audit import record

    hostile = "[/bold]"
    app.start("greet", {"who": "x"}, run_id=hostile, labels={"team": "[/red]"})
    app.portal.run(record(app.store, "vic", "POST /api/x\x1b[2J[red]", hostile, outcome="failed"))
    for args in (["runs"], ["show", hostile], ["audit"]):
        result = invoke(app, *args)
        assert result.exit_code == 0, (args, result.output)
        assert hostile in result.stdout
        assert "\x1b" not in result.stdout
    assert "[/red]" in invoke(app, "runs").stdout
    assert "\\x1b[2J[red]" in invoke(app, "audit").stdout
