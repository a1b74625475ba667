"""Schedules: start a workflow on a cron expression, exactly one run per tick.

How it holds across any number of workers and hosts:

1. A schedule is declared in code (`App.schedule`) and saved in the store when a worker starts
   (an upsert: a pause set from the CLI survives restarts and deploys).
2. Every worker runs a `Scheduler` next to its claim loop. Each pass reads the schedules due
   by now (one indexed query) and, for each tick to start, creates the run whose id is derived
   from the schedule and the tick (``sched-<name>-<epoch seconds>``). `create_run` is
   idempotent, so two workers seeing the same tick create one run: the tick *is* the run id.
3. Then the worker moves the schedule's ``next_at`` on with a compare-and-set; a worker that
   lost the race just reads the new value on its next pass. A crash between creating the run
   and advancing is harmless: the next pass recreates the same id, which is a no-op.

Overlap (a tick due while the previous scheduled run is unfinished): ``skip`` drops the tick,
``queue`` holds it until the previous run ends (then starts it, once: ticks held together
collapse into one run), ``allow`` starts it. With ``skip`` or ``queue`` a pass starts one run
at most, so a schedule never runs twice at once (``queue`` with ``catchup="all"`` starts every
due tick, held or missed, one after another).
Catch-up: a tick seen at most `ON_TIME` seconds late (a slow poll, a worker restarting) is on
time and always starts. For ticks missed longer (no worker ran), ``latest`` starts one run for
the most recent of them, ``all`` one per missed tick (at most `MAX_CATCHUP`), ``none`` none.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tether.engine.registry import WorkflowDef
from tether.errors import UserError
from tether.store.base import FINISHED_STATUSES, NewRun, RunRecord, ScheduleRecord, Store

log = logging.getLogger("tether.schedules")

ON_TIME = 60.0
"""A tick started at most this many seconds late is on time, not a missed one."""
MAX_CATCHUP = 100
"""``catchup="all"`` starts at most this many missed ticks at once."""
POLL_SECONDS = 1.0
"""How often a worker looks for due schedules (ticks are at most this late)."""

Overlap = Literal["skip", "queue", "allow"]
Catchup = Literal["latest", "all", "none"]


@dataclass(frozen=True, slots=True)
class Schedule:
    """A workflow started on a cron expression (see the module docstring)."""

    name: str
    cron: str
    """Five fields (minute hour day month weekday), or six with a leading seconds field."""
    workflow: str
    input: dict[str, Any] = field(default_factory=dict[str, Any])
    timezone: str = "UTC"
    labels: dict[str, str] = field(default_factory=dict[str, str])
    overlap: Overlap = "skip"
    catchup: Catchup = "latest"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", self.name):
            raise UserError(
                f"schedule name {self.name!r} must be letters, digits, '_', '-', '.' or ':'"
            )
        _cron(self.cron)  # validates
        _zone(self.timezone)
        if self.overlap not in ("skip", "queue", "allow"):
            raise UserError(f"schedule {self.name!r}: overlap must be skip, queue or allow, "
                            f"got {self.overlap!r}")
        if self.catchup not in ("latest", "all", "none"):
            raise UserError(f"schedule {self.name!r}: catchup must be latest, all or none, "
                            f"got {self.catchup!r}")

    def next_after(self, moment: float) -> float:
        """The first tick strictly after `moment` (epoch seconds)."""
        return next_tick(self.cron, self.timezone, moment)

    def record(self, now: float) -> ScheduleRecord:
        return ScheduleRecord(
            name=self.name, cron=self.cron, timezone=self.timezone, workflow=self.workflow,
            input=dict(self.input), labels=dict(self.labels), overlap=self.overlap,
            catchup=self.catchup, next_at=self.next_after(now),
        )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UserError(f"unknown time zone {name!r}; use an IANA name like 'Europe/Paris' "
                        "or 'UTC'") from exc


def _cron(expression: str) -> tuple[str, bool]:
    from croniter import croniter

    seconds = len(expression.split()) == 6
    if not croniter.is_valid(expression, second_at_beginning=seconds):
        raise UserError(
            f"invalid cron expression {expression!r}; use five fields (minute hour day month "
            "weekday, e.g. '0 9 * * MON') or six with a leading seconds field"
        )
    return expression, seconds


def next_tick(cron: str, timezone: str, after: float) -> float:
    """The first tick of `cron` in `timezone` strictly after `after` (epoch seconds).

    When clocks go back, the wall times of the repeated hour come twice. An expression with a
    fixed hour (``30 2 * * *``) ticks at the first of them only — a daily job runs once that
    day, as cron does; one whose hour field is a wildcard (``0 * * * *``, ``*/30 * * * *``)
    ticks at both, as each is another hour of real time."""
    from croniter import croniter

    expression, seconds = _cron(cron)
    zone = _zone(timezone)
    fields = expression.split()
    hour = fields[2 if seconds else 1] if len(fields) >= 5 else expression
    fixed_hour = not hour.startswith(("*", "@hourly"))
    ticks = croniter(expression, datetime.fromtimestamp(after, zone), second_at_beginning=seconds)
    while True:
        tick = float(ticks.get_next(float))
        if not (fixed_hour and datetime.fromtimestamp(tick, zone).fold):
            return tick


def tick_run_id(name: str, tick: float) -> str:
    """The run id of a schedule's tick: the same on every worker, so a tick starts one run."""
    return f"sched-{name}-{round(tick)}"


class ScheduleHost(Protocol):
    """What the scheduler uses of the `Runtime` whose schedules it fires (named by this
    protocol, not imported: the runtime imports this module to declare schedules)."""

    @property
    def store(self) -> Store: ...

    @property
    def schedules(self) -> Mapping[str, Schedule]: ...

    def get_workflow(self, name: str, version: str | None = None) -> WorkflowDef | None: ...

    def workflow_names(self) -> list[str]: ...


class Scheduler:
    """Starts the runs of due schedules; one per worker (see the module docstring)."""

    def __init__(self, app: ScheduleHost, *, clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.clock = clock

    async def register(self) -> None:
        """Save the App's declared schedules in the store (keeps pauses and progress)."""
        served = self.app.workflow_names()
        for schedule in self.app.schedules.values():
            await self.app.store.put_schedule(schedule.record(self.clock()))
            if served and self.app.get_workflow(schedule.workflow) is None:
                log.warning(
                    "schedule %s starts workflow %r, which this worker does not serve (it serves "
                    "%s): only workers that serve it fire the schedule", schedule.name,
                    schedule.workflow, ", ".join(served),
                )

    async def run(self, stop: asyncio.Event) -> None:
        """Fire due schedules every `POLL_SECONDS` until `stop` is set."""
        await self.register()
        while not stop.is_set():
            try:
                await self.fire_due()
            except Exception as exc:  # a store blip: the next pass tries again
                log.warning("scheduler: could not start due schedules (%s); retrying", exc)
            try:
                await asyncio.wait_for(stop.wait(), POLL_SECONDS)
            except TimeoutError:
                pass

    async def fire_due(self) -> list[str]:
        """One pass: start the runs of every due tick; returns the run ids created."""
        now = self.clock()
        started: list[str] = []
        for record in await self.app.store.list_schedules(due_by=now):
            if self.app.get_workflow(record.workflow) is None and self.app.workflow_names():
                continue  # another deployment's schedule: leave it to workers that have it
            started.extend(await self._fire(record, now))
        return started

    async def trigger(self, name: str) -> str:
        """Start a run of the schedule now, outside its ticks; returns the run id."""
        record = await self.app.store.get_schedule(name)
        if record is None:
            raise UserError(f"no schedule named {name!r}; `tether schedules` lists them")
        now = self.clock()
        run_id = f"sched-{name}-manual-{int(now * 1000)}"
        await self._start(record, run_id, now, manual=True)
        return run_id

    async def _fire(self, record: ScheduleRecord, now: float) -> list[str]:
        previous = await self._previous(record) if record.overlap != "allow" else None
        unfinished = previous is not None and previous.status not in FINISHED_STATUSES
        # A tick `queue` held while the previous run was unfinished is late from that run's
        # end, not from the tick: it was held, not missed while no worker ran.
        held_until = (previous.finished_at if previous is not None and not unfinished
                      and record.overlap == "queue" else None)
        ticks = self._ticks_to_start(record, now, held_until)
        following = next_tick(record.cron, record.timezone, now)
        if ticks and unfinished:
            if record.overlap == "queue":
                return []  # hold the tick (next_at stays due) until the previous run ends
            ticks = []  # skip: the due ticks are dropped
        if len(ticks) > 1 and record.overlap != "allow":
            # One run at a time: the due ticks collapse into one run for the latest — except
            # `queue` with `catchup="all"`, which starts the oldest and holds the others, so
            # each due tick (held or missed) runs after the one before it ends.
            if record.overlap == "queue" and record.catchup == "all":
                ticks, following = ticks[:1], ticks[1]
            else:
                ticks = ticks[-1:]
        created: list[str] = []
        for tick in ticks:
            run_id = tick_run_id(record.name, tick)
            if await self._start(record, run_id, tick):
                created.append(run_id)
        last = ticks[-1] if ticks else None
        moved = await self.app.store.advance_schedule(
            record.name, record.next_at, following, fired_at=last,
            run_id=tick_run_id(record.name, last) if last is not None else None,
        )
        if not moved:
            log.debug("scheduler: schedule %s was advanced by another worker", record.name)
        return created

    def _ticks_to_start(
        self, record: ScheduleRecord, now: float, held_until: float | None = None
    ) -> list[float]:
        due: list[float] = []
        tick = record.next_at
        while tick <= now and len(due) < MAX_CATCHUP + 1:
            due.append(tick)
            tick = next_tick(record.cron, record.timezone, tick)
        # A tick a poll or a restart late is on time and always starts; the catch-up policy
        # decides only about ticks missed while no worker ran.
        since = held_until or 0.0
        on_time = [t for t in due if now - max(t, since) <= ON_TIME]
        missed = [t for t in due if now - max(t, since) > ON_TIME]
        if record.catchup == "all":
            return (missed + on_time)[-MAX_CATCHUP:]
        if record.catchup == "none":
            return on_time[-MAX_CATCHUP:]
        return (missed[-1:] + on_time)[-MAX_CATCHUP:]  # latest

    async def _previous(self, record: ScheduleRecord) -> RunRecord | None:
        if record.last_run_id is None:
            return None
        return await self.app.store.get_run(record.last_run_id)

    async def _start(
        self, record: ScheduleRecord, run_id: str, tick: float, *, manual: bool = False
    ) -> bool:
        definition = self.app.get_workflow(record.workflow)
        labels = {**record.labels, "tether.schedule": record.name,
                  "tether.schedule.tick": "manual" if manual else str(round(tick))}
        new = NewRun(
            id=run_id,
            workflow=record.workflow,
            version=definition.version if definition is not None else None,
            input=dict(record.input),
            labels=labels,
        )
        _, _, created = await self.app.store.create_run(new)
        if created:
            log.info("scheduler: schedule %s started run %s%s", record.name, run_id,
                     " (triggered by hand)" if manual else f" for its {_iso(tick)} tick")
        return created


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment).astimezone().isoformat(timespec="seconds")
