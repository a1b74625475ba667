"""`tether --version`, and report options that reject what they do not know."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

import tether
from tether.cli import main as _main  # noqa: F401 - registers the commands
from tether.cli.common import cli


def _commands() -> None:
    from tether.cli import observe, runs  # noqa: F401


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"tether {tether.__version__}"


def test_stats_and_cost_reject_an_unknown_group_by_key(tmp_path: Path) -> None:
    _commands()
    store = f"sqlite:///{tmp_path / 't.db'}"
    app = tether.App(store)

    @app.workflow
    async def hello(ctx: tether.Context) -> int:
        return 1

    app.run("hello", {}, labels={"team": "web"})
    for command in ("stats", "cost"):
        result = CliRunner().invoke(cli, [command, "--by", "bogus", "--store", store])
        assert result.exit_code == 2, result.output
        assert "'bogus'" in result.output and "team" in result.output
    # A plain workflow's steps belong to no agent node: the default grouping says where they are.
    by_node = CliRunner().invoke(cli, ["stats", "--store", store])
    assert by_node.exit_code == 0, by_node.output
    assert "no agent node ran in the last 7d; workflow steps: --by workflow" in by_node.output
    by_workflow = CliRunner().invoke(cli, ["stats", "--by", "workflow", "--store", store])
    assert "hello" in by_workflow.output
