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
    assert not issubclass(tether.UserError, tether.RunError)
