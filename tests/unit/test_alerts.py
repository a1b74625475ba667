"""Alert configuration, keys, payload and backoff; the engine's background-task hook."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import tether
from tether.engine.background import (
    add_background_task,
    background_tasks,
    start_background_tasks,
    stop_background_tasks,
)
from tether.errors import UserError
from tether.observe.alerts import AlertConfig, AlertWatch, alert_config, configure
from tether.observe.webhook import payload, retry_delay
from tether.store.base import AlertRecord, NewAlert, alert_id


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"kinds": ("stuck", "pager")}, "pager"),
        ({"every": 0}, "every"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"spend_thresholds": (80,)}, "80"),
        ({"timeout": 30.0, "delivery_lease": 10.0}, "delivery_lease"),
        ({"webhook": "hooks.example.com/x"}, "http"),
        ({"headers": {"Authorization": "Bearer …"}}, "Authorization.*ASCII"),
    ],
)
def test_bad_configuration_says_what_is_wrong(options: dict[str, Any], names: str) -> None:
    with pytest.raises(UserError, match=names):
        AlertConfig(**options)


def test_configure_registers_one_worker_task_per_app() -> None:
    app = tether.App("sqlite:///:memory:")
    other = tether.App("sqlite:///:memory:")
    configure(app, "https://hooks.example.com/a", every=1.0)
    configure(app, "https://hooks.example.com/b")
    config = alert_config(app)
    assert config is not None and config.webhook == "https://hooks.example.com/b"
    assert len(background_tasks(app)) == 1
    assert alert_config(other) is None and background_tasks(other) == []


def test_one_occurrence_has_one_id() -> None:
    a = NewAlert(key="stuck:run-1:4", kind="stuck", subject="run-1", summary="x")
    b = NewAlert(key="stuck:run-1:4", kind="stuck", subject="run-1", summary="other words")
    c = NewAlert(key="stuck:run-1:5", kind="stuck", subject="run-1", summary="x")
    assert a.id == b.id == alert_id("stuck:run-1:4") != c.id
    assert a.id.startswith("al_")


def test_backoff_doubles_up_to_its_cap() -> None:
    config = AlertConfig(backoff=2.0, max_backoff=10.0)
    assert [retry_delay(config, n) for n in (1, 2, 3, 4, 5)] == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_the_payload_carries_the_id_and_a_chat_friendly_text() -> None:
    alert = AlertRecord(
        id="al_1", key="k", series="k", kind="spend", subject="tenant=acme",
        summary="spend limit passed 80%", details={"fraction": 0.81}, created_at=0.0,
        state="pending", attempts=2, next_attempt_at=0.0,
    )
    body = payload(alert)
    assert body == {
        "id": "al_1", "kind": "spend", "subject": "tenant=acme",
        "summary": "spend limit passed 80%", "text": "[tether spend] spend limit passed 80%",
        "details": {"fraction": 0.81}, "created_at": "1970-01-01T00:00:00+00:00",
        "attempt": 2, "source": "tether",
    }


class _Runs:
    """A store with running runs and nothing else (for the stuck detector)."""

    def __init__(self, runs: list[Any]) -> None:
        self.runs = runs

    async def list_runs(self, **_: Any) -> list[Any]:
        return self.runs

    async def load_steps(self, run_id: str) -> list[Any]:
        return []

    async def load_window(self, since: float, until: float | None = None) -> list[Any]:
        return []


def _running(run_id: str, *, lease_expires: float, started: float) -> Any:
    from tether.store.base import RunRecord

    return RunRecord(
        id=run_id, workflow="w", version="1", status="running", input={}, output=None,
        error=None, labels={}, budget=None, parent_id=None, created_at=started,
        updated_at=started, started_at=started, finished_at=None, wake_at=None,
        waiting_for=None, lease_owner="w1:ab~live", lease_expires=lease_expires, fencing=3,
        recoveries=0, cancel_requested=False,
        progress={"seq": 1, "name": "think", "kind": "step", "started_at": started},
    )


async def test_stuck_keys_name_the_run_and_its_holder_and_skip_a_takeover_in_progress() -> None:
    now = time.time()
    app = tether.App("sqlite:///:memory:", lease_seconds=10.0)
    app.store = _Runs([  # type: ignore[assignment]
        _running("hung", lease_expires=now + 5, started=now - 100),
        _running("just-expired", lease_expires=now - 2, started=now - 100),
        _running("abandoned", lease_expires=now - 30, started=now - 100),
        _running("fresh", lease_expires=now + 5, started=now - 1),
    ])
    found = await AlertWatch(app, AlertConfig(stuck_after=10.0)).stuck(now)
    assert {a.subject: a.key for a in found} == {
        "hung": "stuck:hung:3", "abandoned": "stuck:abandoned:3",
    }
    assert "heartbeat lost" in next(a.summary for a in found if a.subject == "abandoned")


async def test_background_tasks_start_and_stop_with_the_worker_hook() -> None:
    app = tether.App("sqlite:///:memory:")
    seen: list[str] = []

    async def task(app_: Any, stop: asyncio.Event) -> None:
        seen.append("started")
        await stop.wait()
        seen.append("stopped")

    async def broken(app_: Any, stop: asyncio.Event) -> None:
        raise RuntimeError("boom")

    add_background_task(app, task)
    add_background_task(app, task)
    add_background_task(app, broken)
    stop = asyncio.Event()
    tasks = start_background_tasks(app, stop)
    await asyncio.sleep(0)
    stop.set()
    await stop_background_tasks(tasks)
    assert seen == ["started", "stopped"]


class _Counting:
    """A store that says every alert is new, counting the inserts asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def record_alert(self, alert: NewAlert) -> AlertRecord | None:
        self.asked.append(alert.key)
        return None  # another worker recorded it first


async def test_a_lasting_condition_costs_one_insert_attempt_per_worker() -> None:
    app = tether.App("sqlite:///:memory:")
    store = _Counting()
    app.store = store  # type: ignore[assignment]
    watch = AlertWatch(app, AlertConfig(kinds=()))
    lasting = NewAlert(key="stuck:r:1", kind="stuck", subject="r", summary="x")
    series = NewAlert(key="spend:a@1", series="spend:a", quiet_seconds=3600, kind="spend",
                      subject="a", summary="x")

    async def detect(now: float) -> list[NewAlert]:
        return [lasting, series]

    watch.stuck = detect  # type: ignore[method-assign]
    watch.config = AlertConfig(kinds=("stuck",))
    now = time.time()
    for tick in range(5):
        await watch.evaluate(now + tick)
    assert store.asked == ["stuck:r:1", "spend:a@1"]
    await watch.evaluate(now + 61)  # the series is asked again after a minute
    assert store.asked == ["stuck:r:1", "spend:a@1", "spend:a@1"]
