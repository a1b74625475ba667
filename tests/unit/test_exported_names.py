"""The public API of DESIGN.md is a contract: these names must keep existing."""

from __future__ import annotations

import tether

DESIGN_NAMES = {
    "App", "Context", "Retry", "Budget", "RunHandle", "RunInfo", "StepInfo", "RunFailed",
    "RunRefused", "BudgetExceeded", "NonDeterminismError", "UserError", "LeaseLost", "Policy",
    "TetherDurability",
}


def test_every_design_name_is_exported() -> None:
    missing = sorted(name for name in DESIGN_NAMES if not hasattr(tether, name))
    assert missing == []


def test_all_is_sorted_and_complete() -> None:
    assert list(tether.__all__) == sorted(tether.__all__)
    for name in tether.__all__:
        assert hasattr(tether, name), name


def test_the_error_tree_matches_its_drawing() -> None:
    assert issubclass(tether.BudgetExceeded, tether.RunFailed)
    assert issubclass(tether.NonDeterminismError, tether.RunFailed)
    assert issubclass(tether.RunFailed, tether.RunError)
    assert issubclass(tether.RunRefused, tether.RunError)
    assert issubclass(tether.LeaseLost, tether.RunError)
    assert issubclass(tether.UnknownRun, tether.UserError)
    assert issubclass(tether.SignalTimeout, TimeoutError)
    assert issubclass(tether.SchemaTooNew, tether.StoreError)
    assert not issubclass(tether.UserError, tether.RunError)


def test_importing_tether_for_plain_workflows_loads_no_agent_layer() -> None:
    """Workers and CLI commands of apps without agents must not pay for pydantic-ai."""
    import subprocess
    import sys

    code = (
        "import sys, tether\n"
        "app = tether.App('sqlite:///:memory:')\n"
        "@app.workflow\n"
        "async def hello(ctx): return 1\n"
        "assert 'pydantic_ai' not in sys.modules, 'pydantic_ai imported'\n"
        "assert 'tether.agents' not in sys.modules, 'tether.agents imported'\n"
        "tether.Agent\n"  # first use loads the agents layer
        "assert 'tether.agents' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
