"""The worker: claims runnable runs, executes them concurrently, keeps their leases alive.

No control plane: every worker takes over runs whose lease expired, and at once those of a
worker whose process is observed dead (it held the store's liveness lock from its start and
the lock was released; see "Liveness" in `tether.store.base`), so a crashed worker is replaced
within a poll interval and a paused or partitioned one within one lease period. Leases of the
runs it executes are renewed in one statement every third of the lease and retried quickly through store errors; a run's steps start only
while its lease can be relied on (`tether.engine.lease`). A worker never claims a run it holds
itself; one it stopped executing (the store failed it, or a claim's answer was lost) is
released when the store answers again or taken back by its next claim. On shutdown the worker stops claiming, lets in-flight runs finish for a grace
period, then hands the rest back. Beside its runs a worker keeps schedules and retention, and runs the
background tasks layers above registered for the App (`tether.engine.background`: alerts).
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

from tether.engine import background, memory, presence
from tether.engine.control import CancelRun, DropRun, RefuseRun, Suspend
from tether.engine.interrupts import watch_cancels
from tether.engine.lease import Leases
from tether.engine.schedules import Scheduler
from tether.errors import SchemaTooNew, StoreUnavailable
from tether.store.base import LIVE_MARK

if TYPE_CHECKING:
    from tether.engine.host import WorkerHost
    from tether.store.base import WorkerRecord

log = logging.getLogger("tether.worker")

_CLAIM_BATCH = 64
_POLL_MIN = 0.005
_POLL_MAX = 0.25


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def quiet_control_flow(loop: asyncio.AbstractEventLoop) -> None:
    """Don't log control-flow signals left in abandoned workflow branches (a gather sibling
    that hit the run's suspension after the run was parked). Idempotent per loop."""
    previous = loop.get_exception_handler()
    if getattr(previous, "_tether_quiet", False):
        # `Runtime.run_async` calls this for every run: wrapping again would grow a chain of
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
        app: WorkerHost,
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
        # The mark promises the store's liveness lock, held from `run` on: a worker whose
        # process dies loses its runs at once, not one lease later (see "Liveness" in base.py).
        self.owner = f"{self.name}:{uuid.uuid4().hex[:8]}{LIVE_MARK}"
        self.grace_period = grace_period
        self.leases = Leases(app.store, self.owner, app.lease_seconds, live=app.live_contexts)
        self._active: dict[str, asyncio.Task[str]] = {}
        self._quarantined: set[str] = set()
        self._slot_freed = asyncio.Event()
        self.completed = 0
        self.too_new: SchemaTooNew | None = None
        """Set when a newer tether migrated the store to a schema this code must not use."""
        self._released_at = 0.0
        self._released_at_count = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then shut down gracefully."""
        app = self.app
        await app.store.open()
        await self._hold_liveness()
        quiet_control_flow(asyncio.get_running_loop())
        keys = app.workflow_keys()
        if not keys:
            log.warning("worker %s: the app registers no workflows; nothing to run", self.name)
        log.info("worker %s started (concurrency %d)", self.owner, self.concurrency)
        heartbeat = asyncio.create_task(self.leases.keep(), name="tether-heartbeat")
        cancels = asyncio.create_task(
            watch_cancels(app.store, self.owner, app.live_contexts, lambda: bool(self._active)),
            name="tether-cancel-watch",
        )
        scheduler = asyncio.create_task(Scheduler(app).run(stop), name="tether-scheduler")
        retention = (
            asyncio.create_task(app.retention.keep_applying(app.store, stop), name="tether-retention")
            if app.retention is not None
            else None
        )
        schema = asyncio.create_task(self._watch_schema(stop), name="tether-schema-watch")
        registry = await self._announce()
        await self._report_unrunnable_versions()
        # Tasks registered by the layers above (alerts): after the announce, so a task that
        # asks which workers are live counts this one.
        extras_stop = asyncio.Event()
        extras = background.start_background_tasks(app, extras_stop)
        poll = _POLL_MIN
        try:
            while not stop.is_set():
                free = self.concurrency - len(self._active)
                claimed = 0
                if free > 0:
                    sent = time.monotonic()
                    try:
                        claims = await app.store.claim_runs(
                            self.owner,
                            keys,
                            limit=min(free, _CLAIM_BATCH),
                            lease_seconds=app.lease_seconds,
                            # Runs leased to us that we do not execute (a claim whose answer
                            # was lost, a run dropped) come back with this claim.
                            executing=self._active.keys() | self._quarantined,
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
                        self.leases.hold(claim.run.id, sent)
                        task = asyncio.create_task(self._execute(claim), name=claim.run.id)
                        self._active[claim.run.id] = task
                if claimed:
                    poll = _POLL_MIN
                    await asyncio.sleep(0)
                    continue
                await self._release_memory()
                await self._idle(stop, poll if free > 0 else _POLL_MAX)
                poll = min(poll * 2, _POLL_MAX)
        finally:
            extras_stop.set()
            schema.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await schema
            await self._shutdown()
            await background.stop_background_tasks(extras)
            scheduler.cancel()
            cancels.cancel()
            if retention is not None:
                retention.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retention
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cancels
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            with contextlib.suppress(asyncio.CancelledError):
                await scheduler
            await self._withdraw(registry)
            await self.leases.close()
            with contextlib.suppress(Exception):
                await app.store.drop_liveness(self.owner)
            log.info("worker %s stopped", self.owner)
        if self.too_new is not None:
            raise self.too_new

    async def _watch_schema(self, stop: asyncio.Event) -> None:
        """Stop this worker once a newer tether migrates the store under it to a schema this
        code must not use (asked once per lease period; store/migrate.py). Its runs are given
        back at once, not finished here: workers of the newer code resume them from their
        journals."""
        while not stop.is_set():
            await self._pause(stop, self.app.lease_seconds)
            try:
                await self.app.store.check_schema()
            except SchemaTooNew as exc:
                log.error("worker %s: stopping: %s", self.name, exc)
                self.too_new = exc
                stop.set()
                return
            except Exception as exc:
                log.debug("worker %s: schema check failed (%s)", self.name, exc)

    async def _hold_liveness(self) -> None:
        """Take the store's liveness lock before the first claim; without it, claim under a
        name without the mark (runs are then taken over only when their lease expires)."""
        try:
            held = await self.app.store.hold_liveness(self.owner)
        except Exception as exc:
            log.warning("worker %s: no liveness lock (%s)", self.name, exc)
            held = False
        if not held:
            self.owner = self.owner.removesuffix(LIVE_MARK)
            self.leases.owner = self.owner

    async def _release_memory(self) -> None:
        """Idle after work: give back what the burst left in caches and the C heap (at most
        once per `memory.RELEASE_EVERY` seconds, only if something ran since)."""
        now = time.monotonic()
        if self.completed == self._released_at_count:
            return
        if now < self._released_at + memory.RELEASE_EVERY:
            return
        self._released_at, self._released_at_count = now, self.completed
        await memory.release(self.app.store)

    async def _report_unrunnable_versions(self) -> None:
        """Log the queued and waiting runs no live worker serves (a deploy dropped their
        version, or no worker has their workflow)."""
        await presence.report_unserved(self.app, self.name)

    async def _announce(self) -> tuple[WorkerRecord, asyncio.Task[None]]:
        """Enter the worker registry; the returned task keeps the row fresh."""
        record = presence.worker_record(self.app, self.owner, self.name)
        await presence.announce(self.app.store, record)
        task = asyncio.create_task(
            presence.keep_announced(self.app.store, record), name="tether-registry"
        )
        return record, task

    async def _withdraw(self, registry: tuple[WorkerRecord, asyncio.Task[None]]) -> None:
        record, task = registry
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await presence.withdraw(self.app.store, record)

    async def _execute(self, claim: Any) -> str:
        status = "error"
        try:
            status = await self.app.executor.execute(claim, leases=self.leases)
            return status
        except asyncio.CancelledError:
            raise
        except StoreUnavailable as exc:
            log.warning("worker %s: run %s dropped: %s", self.name, claim.run.id, exc)
            status = "dropped"
            return status
        except Exception:
            log.exception("worker %s: run %s crashed the executor", self.name, claim.run.id)
            # Not taken back by our own claims (that would crash-loop here): its lease runs out
            # and another worker takes it over, a stall if it makes no progress there either.
            self._quarantined.add(claim.run.id)
            return status
        finally:
            if status == "dropped":
                # Lost to a takeover (the fenced release changes nothing) or to a store that
                # failed us: released as soon as the store answers, for any worker to continue.
                self.leases.hand_back(claim.run.id, claim.token)
            else:
                self.leases.forget(claim.run.id)
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

    async def _shutdown(self) -> None:
        if not self._active:
            return
        log.info(
            "worker %s: stopping; %d run(s) in flight get %.1fs to finish",
            self.name,
            len(self._active),
            self.grace_period,
        )
        # Code too old for the store must not write more than it has to: no grace.
        deadline = time.monotonic() + (0.0 if self.too_new else self.grace_period)
        pending = set(self._active.values())
        while pending and time.monotonic() < deadline:
            # Keep leases alive while we wait.
            with contextlib.suppress(Exception):
                await self.leases.renew()
            _, pending = await asyncio.wait(
                pending, timeout=min(self.app.lease_seconds / 3, deadline - time.monotonic())
            )
        for task in pending:
            task.cancel()  # the executor releases the run on cancellation
        if pending:
            await asyncio.wait(pending, timeout=5.0)
