"""Schedules on both stores: one run per tick whoever sees it, overlap and catch-up policies,
pauses that survive re-registration, and the `tether schedules` commands.

The scheduler's clock is injected, so ticks are exact and no test waits for wall time.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

import tether
from tether.cli import main as _register_commands  # noqa: F401
from tether.cli import schedules as _schedules_cli  # noqa: F401
from tether.cli.common import cli
from tether.engine.schedules import Scheduler, next_tick, tick_run_id

T0 = datetime(2026, 12, 7, 8, 59, 0, tzinfo=UTC).timestamp()  # a Monday, 08:59 UTC


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_app(url: str, **schedule: Any) -> tether.App:
    app = tether.App(url)

    @app.workflow
    async def report(ctx: tether.Context, team: str = "all") -> str:
        return team

    app.schedule(schedule.pop("cron", "*/10 * * * * *"), workflow="report",
                 input={"team": "sales"}, **schedule)
    return app


def scheduled_runs(app: tether.App) -> list[tether.RunInfo]:
    return sorted((r for r in app.list_runs(limit=1000) if r.id.startswith("sched-")),
                  key=lambda r: r.id)


def test_next_tick_honours_the_time_zone_and_a_seconds_field() -> None:
    monday_9_paris = datetime(2026, 12, 7, 8, 0, tzinfo=UTC).timestamp()  # 09:00 CET
    assert next_tick("0 9 * * MON", "Europe/Paris", T0 - 3600 * 2) == monday_9_paris
    assert next_tick("*/10 * * * * *", "UTC", T0) == T0 + 10


def test_a_daily_schedule_runs_once_on_the_night_clocks_go_back(sqlite_url: str) -> None:
    # 02:30 comes twice in Paris on 2026-10-25 (CEST, then CET an hour later): a daily job
    # started twice that night. An hourly one still runs each hour of real time.
    paris = ZoneInfo("Europe/Paris")
    saturday_noon = datetime(2026, 10, 24, 12, 0, tzinfo=paris).timestamp()
    sunday_noon = datetime(2026, 10, 25, 12, 0, tzinfo=paris).timestamp()  # 25 h later
    ticks: dict[str, list[str]] = {}
    for cron in ("30 2 * * *", "0 * * * *"):
        clock = Clock(saturday_noon)
        app = make_app(sqlite_url, cron=cron, timezone="Europe/Paris", catchup="all",
                       overlap="allow")
        scheduler = Scheduler(app, clock=clock)
        app.portal.run(scheduler.register())
        ticks[cron] = []
        while clock.now < sunday_noon:  # a pass every minute
            clock.now += 60
            ticks[cron] += [datetime.fromtimestamp(int(r.rsplit("-", 1)[1]), paris).isoformat()
                            for r in _fire(app, clock, scheduler)]
        app.portal.run(app.store.delete_schedule("report"))
    assert ticks["30 2 * * *"] == ["2026-10-25T02:30:00+02:00"]
    assert ticks["0 * * * *"][12:16] == ["2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00",
                                         "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"]
    assert len(ticks["0 * * * *"]) == 25  # 24 hours of wall clock, 25 of real time


def test_racing_workers_start_one_run_per_tick(store_url: str) -> None:
    clock = Clock(T0)
    apps = [make_app(store_url, overlap="allow") for _ in range(3)]
    schedulers = [Scheduler(app, clock=clock) for app in apps]

    async def race() -> list[str]:
        for s in schedulers:
            await s.register()
        created: list[str] = []
        for _ in range(6):  # a minute of 10-second ticks, three workers each pass
            clock.now += 10
            batches = await asyncio.gather(*(s.fire_due() for s in schedulers))
            created.extend(run_id for batch in batches for run_id in batch)
        return created

    created = apps[0].portal.run(race())
    runs = scheduled_runs(apps[0])
    expected = [tick_run_id("report", T0 + 10 * k) for k in range(1, 7)]
    assert sorted(created) == expected  # each tick created exactly once, by one of them
    assert [r.id for r in runs] == expected
    assert all(r.input == {"team": "sales"} and r.tether_labels["tether.schedule"] == "report"
               for r in runs)


def _fire(app: tether.App, clock: Clock, scheduler: Scheduler | None = None) -> list[str]:
    scheduler = scheduler or Scheduler(app, clock=clock)
    return app.portal.run(scheduler.fire_due())


@pytest.mark.parametrize("overlap", ["skip", "queue", "allow"])
def test_overlap_while_the_previous_run_is_unfinished(store_url: str, overlap: str) -> None:
    clock = Clock(T0)
    app = make_app(store_url, overlap=overlap)
    scheduler = Scheduler(app, clock=clock)
    app.portal.run(scheduler.register())
    clock.now += 10
    first = _fire(app, clock, scheduler)
    assert first == [tick_run_id("report", T0 + 10)]  # queued, nobody ran it: unfinished
    clock.now += 10
    second = _fire(app, clock, scheduler)
    if overlap == "allow":
        assert second == [tick_run_id("report", T0 + 20)]
    else:
        assert second == []
    app.run("report", run_id=first[0])  # the previous run finishes
    clock.now += 1
    third = _fire(app, clock, scheduler)
    if overlap == "queue":
        assert third == [tick_run_id("report", T0 + 20)]  # the held tick starts, once
        assert _fire(app, clock, scheduler) == []
    else:
        assert third == []  # skip dropped it; allow already started it


def test_queue_starts_the_ticks_it_held_once(store_url: str) -> None:
    # Measured from outside: a 2-second schedule of a 5-second run with overlap="queue" ran up
    # to three runs at once, and its backlog grew — every held tick started when the run ended.
    clock = Clock(T0)
    app = make_app(store_url, overlap="queue")
    scheduler = Scheduler(app, clock=clock)
    app.portal.run(scheduler.register())
    clock.now += 10
    first = _fire(app, clock, scheduler)
    for _ in range(3):  # the ticks at +20, +30, +40 come while the first run is unfinished
        clock.now += 10
        assert _fire(app, clock, scheduler) == []
    app.run("report", run_id=first[0])
    clock.now += 1
    assert _fire(app, clock, scheduler) == [tick_run_id("report", T0 + 40)]
    assert _fire(app, clock, scheduler) == []
    assert len(scheduled_runs(app)) == 2


def test_a_tick_held_by_queue_is_not_dropped_as_missed(sqlite_url: str) -> None:
    # A daily report whose run lasts past the next day's tick: that tick, held behind it, is
    # ten minutes late when it may start. It was held, not missed while no worker ran, so
    # catchup="none" must not drop it (it did: the day was skipped). The held tick is ten
    # minutes before the wall clock, as the previous run's end is stamped with it.
    held = (int(time.time()) // 60 - 10) * 60
    at = datetime.fromtimestamp(held, UTC)
    clock = Clock(held - 86400 - 1)
    app = make_app(sqlite_url, overlap="queue", catchup="none",
                   cron=f"0 {at.minute} {at.hour} * * *")
    scheduler = Scheduler(app, clock=clock)
    app.portal.run(scheduler.register())
    clock.now += 1
    first = _fire(app, clock, scheduler)
    clock.now = held
    assert _fire(app, clock, scheduler) == []  # held: the first run is unfinished
    app.run("report", run_id=first[0])
    clock.now = time.time() + 1
    assert _fire(app, clock, scheduler) == [tick_run_id("report", held)]


@pytest.mark.parametrize("overlap", ["skip", "queue"])
def test_catchup_all_never_runs_a_schedule_twice_at_once(sqlite_url: str, overlap: str) -> None:
    clock = Clock(T0)
    app = make_app(sqlite_url, cron="0 * * * *", catchup="all", overlap=overlap)
    scheduler = Scheduler(app, clock=clock)
    app.portal.run(scheduler.register())
    nine = T0 + 60
    clock.now = nine + 2 * 3600 + 1800  # 09:00, 10:00 and 11:00 missed
    started: list[str] = []
    for _ in range(4):
        now = _fire(app, clock, scheduler)
        assert len(now) <= 1
        started += now
        if now:
            app.run("report", run_id=now[0])  # ends before the next pass
        clock.now += 1
    if overlap == "queue":  # every missed tick, one after another
        assert started == [tick_run_id("report", nine + h * 3600) for h in range(3)]
    else:  # skip: the latest only
        assert started == [tick_run_id("report", nine + 2 * 3600)]


@pytest.mark.parametrize(("catchup", "expected"), [
    ("latest", [3]), ("all", [0, 1, 2, 3]), ("none", []),
])
def test_catchup_after_downtime(sqlite_url: str, catchup: str, expected: list[int]) -> None:
    clock = Clock(T0)  # 08:59
    app = make_app(sqlite_url, cron="0 * * * *", catchup=catchup, overlap="allow")
    scheduler = Scheduler(app, clock=clock)
    app.portal.run(scheduler.register())
    nine = T0 + 60
    clock.now = nine + 3 * 3600 + 1800  # no worker ran from 08:59 to 12:30: 09:00-12:00 missed
    created = _fire(app, clock, scheduler)
    assert created == [tick_run_id("report", nine + h * 3600) for h in expected]
    # ...and the schedule goes on from now (13:00), not from the missed ticks.
    record = app.portal.run(app.store.get_schedule("report"))
    assert record is not None and record.next_at == nine + 4 * 3600


def test_a_tick_a_little_late_is_on_time_even_without_catchup(sqlite_url: str) -> None:
    clock = Clock(T0)
    app = make_app(sqlite_url, cron="0 * * * *", catchup="none")
    scheduler = Scheduler(app, clock=clock)
    app.portal.run(scheduler.register())
    clock.now = T0 + 60 + 30  # the 09:00 tick seen at 09:00:30 (a worker restarting)
    assert _fire(app, clock, scheduler) == [tick_run_id("report", T0 + 60)]


def test_a_pause_survives_re_registration_and_a_cron_change_moves_the_next_tick(
    store_url: str,
) -> None:
    clock = Clock(T0)
    app = make_app(store_url)
    scheduler = Scheduler(app, clock=clock)
    app.portal.run(scheduler.register())
    app.portal.run(app.store.set_schedule_paused("report", True))
    clock.now += 30
    app.portal.run(Scheduler(make_app(store_url), clock=clock).register())  # a redeploy
    assert _fire(app, clock, scheduler) == []
    record = app.portal.run(app.store.get_schedule("report"))
    assert record is not None and record.paused and record.next_at == T0 + 10
    changed = make_app(store_url, cron="0 * * * * *")
    app.portal.run(Scheduler(changed, clock=clock).register())
    record = app.portal.run(app.store.get_schedule("report"))
    assert record is not None and record.paused and record.cron == "0 * * * * *"
    assert record.next_at == T0 + 60


def test_declaring_schedules_checks_what_it_is_given(sqlite_url: str) -> None:
    app = tether.App(sqlite_url)

    @app.schedule("0 9 * * MON", timezone="Europe/Paris", input={"who": "acme"})
    @app.workflow(name="weekly")
    async def weekly(ctx: tether.Context, who: str) -> str:
        return who

    assert app.schedules["weekly"].workflow == "weekly"
    with pytest.raises(tether.UserError, match="invalid cron expression"):
        app.schedule("every monday", workflow="weekly", name="x")
    with pytest.raises(tether.UserError, match="unknown time zone"):
        app.schedule("0 9 * * MON", workflow="weekly", timezone="Mars/Olympus", name="y")
    with pytest.raises(tether.UserError, match=r"above @app\.workflow"):

        @app.workflow
        @app.schedule("0 9 * * MON")
        async def wrong(ctx: tether.Context) -> None: ...


def test_the_schedules_commands(sqlite_url: str) -> None:
    clock = Clock(T0)
    app = make_app(sqlite_url)
    app.portal.run(Scheduler(app, clock=clock).register())
    runner = CliRunner()
    listed = runner.invoke(cli, ["schedules", "--json", "--store", sqlite_url])
    assert listed.exit_code == 0, listed.output
    assert '"name": "report"' in listed.output
    assert runner.invoke(cli, ["schedules", "pause", "report", "--store", sqlite_url]).exit_code == 0
    assert app.portal.run(app.store.get_schedule("report")).paused  # type: ignore[union-attr]
    assert runner.invoke(cli, ["schedules", "resume", "report", "--store", sqlite_url]).exit_code == 0
    triggered = runner.invoke(cli, ["schedules", "trigger", "report", "--store", sqlite_url])
    assert triggered.exit_code == 0, triggered.output
    run_id = triggered.output.strip()
    assert app.get_run(run_id).input == {"team": "sales"}
    missing = runner.invoke(cli, ["schedules", "pause", "nope", "--store", sqlite_url])
    assert missing.exit_code == 2 and "no schedule named 'nope'" in missing.output
    assert runner.invoke(cli, ["schedules", "delete", "report", "--store", sqlite_url]).exit_code == 0
    assert app.portal.run(app.store.list_schedules()) == []


def test_a_schedule_with_an_input_its_workflow_refuses_fails_when_declared(
    sqlite_url: str,
) -> None:
    # It was accepted, and every tick's run failed — the first one maybe a week later.
    app = tether.App(sqlite_url)

    @app.workflow(name="weekly")
    async def weekly(ctx: tether.Context, who: str) -> str:
        return who

    with pytest.raises(tether.UserError, match="invalid input for workflow 'weekly': who: Field"):
        app.schedule("0 9 * * MON", workflow="weekly", input={"whom": "acme"})
    assert app.schedules == {}


def test_a_worker_says_when_it_cannot_fire_a_schedule_it_declares(
    sqlite_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    # A typo in workflow= was silent: the worker skipped the schedule on every pass.
    app = make_app(sqlite_url)
    app.schedule("0 9 * * MON", workflow="reprot", name="typo")
    with caplog.at_level("WARNING", logger="tether.schedules"):
        app.portal.run(Scheduler(app).register())
    assert "schedule typo starts workflow 'reprot', which this worker does not serve" in caplog.text
