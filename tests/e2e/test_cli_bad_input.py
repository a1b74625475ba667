"""Bad input to the `tether` command, tried as a new user would (separate processes): one line
on stderr saying what was wrong and what to do, exit code 2, and nothing created or changed."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.e2e.harness import APP, client, tether_cli


def assert_one_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["start", "pipeline"],
        ["start", "pipeline", "--app", APP],
        ["worker", "--app", APP],
        ["runs"],
        ["show", "some-run"],
        ["fork", "some-run", "--version", "2"],
        ["serve"],
        ["serve", "--create"],
    ],
    ids=lambda args: "-".join(a for a in args if not a.startswith("tests.")),
)
def test_a_store_in_a_missing_directory(tmp_path: Path, args: list[str]) -> None:
    store = f"sqlite:///{tmp_path}/nope/tether.db"
    result = tether_cli(*args, store=store, timeout=60)
    assert_one_error_line(result, str(tmp_path / "nope"))
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize(
    "args", [["serve"], ["stats"], ["cost"], ["prune", "--older-than", "30d"]], ids=lambda a: a[0]
)
def test_reading_commands_refuse_a_store_that_does_not_exist_yet(
    tmp_path: Path, args: list[str]
) -> None:
    # A typo in the path must not create an empty database and report "nothing here".
    db = tmp_path / "typo.db"
    result = tether_cli(*args, store=f"sqlite:///{db}")
    assert_one_error_line(result, f"no tether store at {db}")
    if args == ["serve"]:
        assert "--create" in result.stderr
    assert not db.exists()


BROKEN_MODULES = {
    "syntax": ("import tether\napp = tether.App(\ndef hello(:\n", "syntax error in {file}:"),
    "missing_dependency": (
        "import tether\nimport no_such_dependency_xyz\napp = tether.App()\n",
        "failed at {file}:2: ModuleNotFoundError: No module named 'no_such_dependency_xyz'",
    ),
    "raises": (
        "import tether\napp = tether.App()\nraise RuntimeError('config missing')\n",
        "failed at {file}:3: RuntimeError: config missing",
    ),
    "no_app": ("import tether\nother = tether.App()\n", "has no 'app'; it defines other"),
    # tether refuses what the module asked for: the module's line, not tether's own file.
    "refused_by_tether": (
        "import tether\n\napp = tether.App('bogus://x')\n",
        "failed at {file}:3: unsupported store URL 'bogus://x'",
    ),
}


@pytest.mark.parametrize("kind", sorted(BROKEN_MODULES))
def test_an_app_module_that_cannot_load(tmp_path: Path, kind: str) -> None:
    source, expected = BROKEN_MODULES[kind]
    module = f"broken_{kind}"
    path = tmp_path / f"{module}.py"
    path.write_text(source)
    db = tmp_path / "tether.db"
    for command in (["start", "hello"], ["worker"]):
        result = tether_cli(*command, "--app", f"{module}:app", store=f"sqlite:///{db}", cwd=tmp_path)
        assert_one_error_line(result, expected.format(file=path))
    assert not db.exists()


def test_starting_an_unknown_workflow(tmp_path: Path) -> None:
    db = tmp_path / "tether.db"
    store = f"sqlite:///{db}"
    # With the app, the workflow names are known: an error listing them, nothing created.
    refused = tether_cli("start", "nosuchworkflow", "--app", APP, store=store)
    assert_one_error_line(refused, "unknown workflow 'nosuchworkflow' (known: ", "pipeline")
    assert not db.exists()
    # Without it, the run is queued by name (a worker may come later), with a warning.
    queued = tether_cli("start", "nosuchworkflow", store=store)
    assert queued.returncode == 0, queued.stderr
    [warning] = queued.stderr.strip().splitlines()
    assert warning.startswith("warning: no live worker serves nosuchworkflow: no worker is running")
    run_id = queued.stdout.strip()
    assert client(store).get_run(run_id).status == "queued"


def test_forking_past_the_end_of_the_journal(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'tether.db'}"
    app = client(store)
    run_id = app.start("pipeline", {"steps": 3}).id
    result = tether_cli("fork", run_id, "--from-step", "999", store=store)
    assert_one_error_line(
        result, f"run {run_id} has 0 journal entries, so from_step must be between 1 and 1",
        "got 999; nothing was forked",
    )
    assert [r.id for r in app.list_runs()] == [run_id]


def test_serving_on_a_port_that_is_taken(tmp_path: Path) -> None:
    # Refused before anything is announced (no "dashboard on …" line for a server that never
    # listened) and without uvicorn's traceback.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = tether_cli("serve", "--create", "--port", str(port),
                            store=f"sqlite:///{tmp_path}/tether.db", timeout=60)
    assert_one_error_line(result, f"cannot listen on 127.0.0.1:{port}", "pick another --port")


def test_an_unreachable_postgresql_server() -> None:
    # Nothing listens on port 1. The store rides out an outage for retry_seconds, saying so once
    # (it printed a line per retry), then one error line that keeps psycopg's two-line message
    # on one line.
    store = "postgresql://postgres@127.0.0.1:1/tether?retry_seconds=2"
    result = tether_cli("runs", store=store, timeout=60)
    assert result.returncode == 2, result.stderr
    warning, error = result.stderr.strip().splitlines()
    assert warning.startswith("PostgreSQL: could not apply migrations"), warning
    assert "retrying for up to 2s" in warning
    assert error.startswith("error: PostgreSQL unreachable for 2s"), error
    assert "check the server and the URL" in error
    assert result.stdout == ""


def test_a_postgresql_database_that_does_not_exist() -> None:
    # The server answers, and says the database is not there: a wrong URL, not an outage, so
    # one error line at once — no "retrying" warning, not "unreachable" after retry_seconds.
    from urllib.parse import urlsplit, urlunsplit

    from tests.pg import postgres_base_url

    url = urlsplit(postgres_base_url())
    store = urlunsplit(url._replace(path="/tether_no_such_database", query=""))
    result = tether_cli("runs", store=store, timeout=60)
    assert_one_error_line(result, 'database "tether_no_such_database" does not exist',
                          "check the database, user and password in the URL")
    assert "unreachable" not in result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["runs", "--bogus"], "No such option: --bogus"),
        (["runs", "--limit", "0"], "--limit"),
        (["show"], "Missing argument"),
        (["no-such-command"], "No such command 'no-such-command'"),
        (["worker", "-c", "0"], "--concurrency"),
    ],
    ids=["unknown-option", "bad-value", "missing-argument", "unknown-command", "worker-flag"],
)
def test_usage_errors_are_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    # The command-line parser's own errors (a usage block and a boxed message) come out in the
    # same one-line shape as every other error, with where to look for the right usage.
    result = tether_cli(*args, store=f"sqlite:///{tmp_path}/tether.db")
    assert_one_error_line(result, fragment, "--help")
    assert not (tmp_path / "tether.db").exists()
