"""Replay of recorded journals (JSON fixtures) against the current workflow code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import tether
from tests.unit.replay_workflows import CALLS, app
from tether.engine.replay import replay

JOURNALS = Path(__file__).parent.parent / "fixtures" / "journals"


def load(name: str) -> dict[str, Any]:
    return json.loads((JOURNALS / name).read_text())


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


def test_a_recorded_run_replays_to_the_same_output_without_executing_anything() -> None:
    recorded = load("greet_ok.json")
    result = replay(app, recorded)
    assert result.completed
    assert result.output == recorded["output"]  # same now(), same uuid(), same signal payload
    assert CALLS == []  # no step function ran


def test_a_journal_whose_step_names_differ_fails_with_both_names() -> None:
    with pytest.raises(tether.NonDeterminismError) as caught:
        replay(app, load("greet_nondeterministic.json"))
    err = caught.value
    assert err.seq == 2
    assert "score_v0" in err.expected
    assert "score" in err.found and "score_v0" not in err.found
    assert "#2" in str(err) and "score_v0" in str(err)


def test_an_in_flight_journal_stops_where_the_recording_ends() -> None:
    result = replay(app, load("greet_in_flight.json"))
    assert not result.completed
    assert result.reached == 3
    assert "past the journal's end" in (result.stopped_at or "")
    assert CALLS == []


def test_a_changed_workflow_is_caught_before_deploy() -> None:
    """The same journal against code that inserted a step first: nondeterminism at #1."""
    changed = tether.App("sqlite:///:memory:")

    @changed.step
    async def audit(name: str) -> None:
        return None

    @changed.step
    async def lookup(name: str) -> dict[str, str]:
        return {}

    @changed.workflow(name="greet", version="1")
    async def greet(ctx: tether.Context, name: str) -> None:
        await audit(name)
        await lookup(name)

    with pytest.raises(tether.NonDeterminismError) as caught:
        replay(changed, load("greet_ok.json"))
    assert caught.value.seq == 1
    assert "lookup" in caught.value.expected and "audit" in caught.value.found
