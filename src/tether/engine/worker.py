"""The worker: claims runnable runs, executes them concurrently, keeps their leases alive.

No control plane: every worker takes over runs whose lease expired, so a dead worker is
replaced within one lease period. Leases of all held runs are renewed in one statement every
third of the lease. On shutdown the worker stops claiming, lets in-flight runs finish for a
grace period, then hands the rest back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from tether.engine.control import CancelRun, DropRun, RefuseRun, Suspend
from tether.errors import StoreUnavailable

if TYPE_CHECKING:
    from tether.engine.app import App

log = logging.getLogger("tether.worker")

_CLAIM_BATCH = 64
_POLL_MIN = 0.005
_POLL_MAX = 0.25
_CANCEL_WATCH = 0.5
"""Seconds between two looks for cancel requests among the runs a worker holds."""


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def quiet_control_flow(loop: asyncio.AbstractEventLoop) -> None:
    """Don't log control-flow signals left in abandoned workflow branches (a gather sibling
    that hit the run's suspension after the run was parked). Idempotent per loop."""
    previous = loop.get_exception_handler()
    if getattr(previous, "_tether_quiet", False):
        # `App.run_async` calls this for every run: wrapping again would grow a chain of
        # handlers one per run, until calling it overflows the stack.
        return

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), Suspend | CancelRun | DropRun | RefuseRun):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler._tether_quiet = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)


class Worker:
    """Executes runs of the App's workflows until stopped."""

    def __init__(
        self,
        app: App,
        *,
        concurrency: int = 100,
        name: str | None = None,
        grace_period: float = 10.0,
    ) -> None:
        self.app = app
        self.concurrency = max(1, concurrency)
        self.name = name or default_worker_name()
        # A per-process suffix: a restarted worker reusing --id must never renew the leases
        # of runs its dead predecessor held.
        self.owner = f"{self.name}:{uuid.uuid4().hex[:8]}"
        self.grace_period = grace_period
        self._active: dict[str, asyncio.Task[str]] = {}
        self._slot_freed = asyncio.Event()
        self.completed = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then shut down gracefully."""
        app = self.app
        await app.store.open()
        quiet_control_flow(asyncio.get_running_loop())
        keys = app.workflow_keys()
        if not keys:
            log.warning("worker %s: the app registers no workflows; nothing to run", self.name)
        log.info("worker %s started (concurrency %d)", self.owner, self.concurrency)
        heartbeat = asyncio.create_task(self._heartbeat(stop), name="tether-heartbeat")
        cancels = asyncio.create_task(self._watch_cancels(), name="tether-cancel-watch")
        await self._report_unrunnable_versions()
        poll = _POLL_MIN
        try:
            while not stop.is_set():
                free = self.concurrency - len(self._active)
                claimed = 0
                if free > 0:
                    try:
                        claims = await app.store.claim_runs(
                            self.owner,
                            keys,
                            limit=min(free, _CLAIM_BATCH),
                            lease_seconds=app.lease_seconds,
                        )
                    except Exception as exc:
                        log.warning("worker %s: claim failed (%s); retrying", self.name, exc)
                        await self._pause(stop, poll)
                        poll = min(poll * 2, 2.0)
                        continue
                    claimed = len(claims)
                    for claim in claims:
                        if claim.recovered:
                            log.info("worker %s: took over run %s", self.name, claim.run.id)
                        task = asyncio.create_task(self._execute(claim), name=claim.run.id)
                        self._active[claim.run.id] = task
                if claimed:
                    poll = _POLL_MIN
                    await asyncio.sleep(0)
                    continue
                await self._idle(stop, poll if free > 0 else _POLL_MAX)
                poll = min(poll * 2, _POLL_MAX)
        finally:
            await self._shutdown()
            cancels.cancel()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cancels
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            log.info("worker %s stopped", self.owner)

    async def _report_unrunnable_versions(self) -> None:
        """Say which queued runs this worker will not touch because it lacks their version."""
        for name in self.app.workflow_names():
            have = sorted(v for n, v in self.app.workflow_keys() if n == name)
            try:
                queued = await self.app.store.list_runs(status="queued", workflow=name, limit=100)
            except Exception:
                return
            missing: dict[str, int] = {}
            for run in queued:
                if run.version is not None and run.version not in have:
                    missing[run.version] = missing.get(run.version, 0) + 1
            for version, count in sorted(missing.items()):
                log.warning(
                    "worker %s: %d queued run(s) of workflow %r need version %r, which this "
                    "worker does not have (it has %s); start a worker with that version to "
                    "finish them, or cancel them",
                    self.name,
                    count,
                    name,
                    version,
                    ", ".join(have),
                )

    async def _execute(self, claim: Any) -> str:
        try:
            return await self.app.executor.execute(claim)
        except asyncio.CancelledError:
            raise
        except StoreUnavailable as exc:
            log.warning("worker %s: run %s left for takeover: %s", self.name, claim.run.id, exc)
            return "dropped"
        except Exception:
            log.exception("worker %s: run %s crashed the executor", self.name, claim.run.id)
            return "error"
        finally:
            self._active.pop(claim.run.id, None)
            self.completed += 1
            self._slot_freed.set()

    async def _idle(self, stop: asyncio.Event, timeout: float) -> None:
        self._slot_freed.clear()
        waits = {
            asyncio.ensure_future(self.app.store.wait_for_work(timeout)),
            asyncio.ensure_future(self._slot_freed.wait()),
            asyncio.ensure_future(stop.wait()),
        }
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    @staticmethod
    async def _pause(stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        interval = self.app.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            if not self._active:
                continue
            progress: dict[str, dict[str, Any] | None] = {}
            for run_id in self._active:
                ctx = self.app.live_contexts.get(run_id)
                if ctx is not None:
                    progress[run_id] = ctx.progress()
            try:
                beat = await self.app.store.heartbeat(
                    self.owner, self.app.lease_seconds, progress
                )
            except Exception as exc:
                log.warning("worker %s: heartbeat failed (%s)", self.name, exc)
                continue
            for run_id in beat.cancel_requested:
                ctx = self.app.live_contexts.get(run_id)
                if ctx is not None:
                    ctx.request_cancel()

    async def _watch_cancels(self) -> None:
        """Interrupt runs cancelled from another process within about `_CANCEL_WATCH` seconds
        (the heartbeat alone notices a cancel only every third of the lease): one cheap read
        of the held runs' cancel requests, only while this worker holds runs."""
        while True:
            await asyncio.sleep(_CANCEL_WATCH)
            if not self._active:
                continue
            try:
                cancelled = await self.app.store.cancel_requests(self.owner)
            except Exception as exc:
                log.debug("worker %s: cancel watch failed (%s)", self.name, exc)
                continue
            for run_id in cancelled:
                ctx = self.app.live_contexts.get(run_id)
                if ctx is not None:
                    ctx.request_cancel()

    async def _shutdown(self) -> None:
        if not self._active:
            return
        log.info(
            "worker %s: stopping; %d run(s) in flight get %.1fs to finish",
            self.name,
            len(self._active),
            self.grace_period,
        )
        deadline = time.monotonic() + self.grace_period
        pending = set(self._active.values())
        while pending and time.monotonic() < deadline:
            # Keep leases alive while we wait.
            with contextlib.suppress(Exception):
                await self.app.store.heartbeat(self.owner, self.app.lease_seconds)
            _, pending = await asyncio.wait(
                pending, timeout=min(self.app.lease_seconds / 3, deadline - time.monotonic())
            )
        for task in pending:
            task.cancel()  # the executor releases the run on cancellation
        if pending:
            await asyncio.wait(pending, timeout=5.0)
