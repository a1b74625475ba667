"""`WorkerHost`: what a `Worker` uses of the `Runtime` that launches it.

The runtime builds its parts — the worker, the scheduler, presence, run handles, the executor —
so none of them imports `tether.engine.runtime`: each names what it needs of the runtime by a
protocol (`PresenceHost`, `ScheduleHost`, `HandleHost`, this one), and pyright checks that
`Runtime` satisfies it where the runtime hands itself over.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from tether.engine.context import Context
from tether.engine.executor import RunExecutor
from tether.engine.presence import PresenceHost
from tether.engine.retention import Retention
from tether.engine.schedules import ScheduleHost


class WorkerHost(PresenceHost, ScheduleHost, Protocol):
    """The runtime as its workers see it: the store, the runs executing in this process, the
    executor that carries a claimed run on, and what the worker announces and schedules."""

    @property
    def live_contexts(self) -> Mapping[str, Context]: ...

    @property
    def retention(self) -> Retention | None: ...

    @property
    def executor(self) -> RunExecutor: ...
