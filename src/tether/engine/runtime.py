"""`Runtime`: the engine's client and worker core — where workflows and steps are registered,
the client API to runs, and the worker's launch. `tether.App` (`tether.app`) builds on it with
what the layers above the engine add (trust approvals, agent registration, span export).

The core is async (`start_async`, `get_run_async`…). The synchronous twins are thin shims that
run the coroutine on the Runtime's portal: one background event loop per Runtime, so the store's
connections live on one loop whatever thread calls. Two Runtimes can live in one process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import signal as signal_module
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar, cast, overload

from tether.engine.background import Later
from tether.engine.budget import Budget
from tether.engine.children import CHILD_KIND, SUPERSEDED, notify_parent, outcome_payload, parent_of
from tether.engine.context import APPROVAL_SIGNAL_PREFIX, BUDGET_SIGNAL, Context, step_wrapper
from tether.engine.events import EventLog, RunEvent, read_events
from tether.engine.executor import RunExecutor
from tether.engine.handles import Portal, RunEventStream, RunHandle
from tether.engine.interrupts import CANCEL_WATCH, watch_cancels
from tether.engine.lease import Leases
from tether.engine.queues import Queue, Rate
from tether.engine.ratelimits import RateLimit, make_limit
from tether.engine.records import STARTED_BY_LABEL, RunInfo, cut_calls
from tether.engine.registry import (
    WorkflowDef,
    make_step,
    make_workflow,
    version_key,
)
from tether.engine.retention import Retention
from tether.engine.retry import Retry
from tether.engine.schedules import Catchup, Overlap, Schedule
from tether.engine.waits import wait_seconds
from tether.engine.worker import Worker, default_worker_name, quiet_control_flow
from tether.errors import UnknownRun, UnknownWorkflow, UserError
from tether.store import open_store
from tether.store.base import FINISHED_STATUSES, RUN_STATUSES, Claim, NewRun, RunRecord, Store

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


__all__ = ["RunEventStream", "RunHandle", "Runtime", "new_run_id"]


def new_run_id() -> str:
    """Time-ordered and unguessable: 12 hex digits of milliseconds, 12 random."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


class Runtime:
    """The engine's client and worker core: its workflows, steps, store and client API.

    `store` is a URL (``sqlite:///tether.db``, ``postgresql://…``) or a `Store`; default
    ``$TETHER_STORE``, else ``sqlite:///tether.db``.
    """

    def __init__(
        self,
        store: str | Store | None = None,
        *,
        lease_seconds: float = 10.0,
        max_recoveries: int = 5,
        version: str | None = None,
        retention: Retention | None = None,
        starter: Callable[[], str],
    ) -> None:
        if lease_seconds <= 0:
            raise UserError(f"lease_seconds must be positive, got {lease_seconds}")
        self.store: Store = store if isinstance(store, Store) else open_store(store)
        self.lease_seconds = lease_seconds
        self.max_recoveries = max_recoveries
        self.starter = starter
        """Who starts a run (and forks one) when the caller does not say: `tether.App` passes
        the OS login name. Every run records its starter; approvals depend on it."""
        self.version = version or os.environ.get("TETHER_APP_VERSION")
        """The application's version, recorded in model-step fingerprints."""
        self.extensions: dict[str, Any] = {}
        """Where upper layers (agents, trust, observe) keep per-App state."""
        self._workflows: dict[tuple[str, str], WorkflowDef] = {}
        self._latest: dict[str, WorkflowDef] = {}
        self._steps: dict[str, Any] = {}
        self.portal = Portal()
        """Runs the synchronous API's coroutines on one background event loop."""
        self._threads = ThreadPoolExecutor(max_workers=64, thread_name_prefix="tether-step")
        self.live_contexts: dict[str, Context] = {}
        """Contexts of the runs this process is executing right now, by run id."""
        self.retention = retention
        """Finished runs the App's workers delete on their own (`tether.Retention`)."""
        self.schedules: dict[str, Schedule] = {}
        """Schedules declared with `schedule`, by name (saved in the store by workers)."""
        self.queues: dict[str, Queue] = {}
        """Queues declared with `queue`, by name (saved in the store before the first start or
        worker of this App)."""
        self._queues_saved = False
        self.rate_limits: dict[str, RateLimit] = {}
        """Provider rate limits declared with `rate_limit`, by model or provider pattern."""
        self.run_events = EventLog(self.store)
        """Where contexts and upper layers emit the runs' events (`tether.engine.events`)."""
        self.executor = RunExecutor(
            self.store,
            self._workflows,
            max_recoveries=max_recoveries,
            executor=self._threads,
            live=self.live_contexts,
            app=self,
            events=self.run_events,
            cancel=self.cancel_async,
        )
        self.executor.listeners.append(self.run_events.on_run_end)

    # --- registration ----------------------------------------------------------------------------

    @overload
    def workflow(self, fn: F, /) -> F: ...
    @overload
    def workflow(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        version: str = "1",
        budget: Budget | None = None,
    ) -> Callable[[F], F]: ...

    def workflow(
        self,
        fn: Any = None,
        /,
        *,
        name: str | None = None,
        version: str = "1",
        budget: Budget | None = None,
    ) -> Any:
        """Register an ``async def wf(ctx: tether.Context, **input)`` as a durable workflow."""

        def register(fn: F) -> F:
            self.add_workflow(make_workflow(fn, name=name, version=version, budget=budget))
            fn.__tether_workflow__ = name or fn.__name__  # type: ignore[attr-defined]
            return fn

        return register(fn) if fn is not None else register

    def add_workflow(self, definition: WorkflowDef) -> None:
        """Register a workflow definition (used by `register` and upper layers)."""
        key = (definition.name, definition.version)
        if key in self._workflows and self._workflows[key].fn is not definition.fn:
            raise UserError(
                f"workflow {definition.name!r} version {definition.version!r} is registered "
                "twice; give the new one another name or version"
            )
        self._workflows[key] = definition
        latest = self._latest.get(definition.name)
        if latest is None or version_key(definition.version) >= version_key(latest.version):
            self._latest[definition.name] = definition

    @overload
    def step(self, fn: F, /) -> F: ...
    @overload
    def step(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
    ) -> Callable[[F], F]: ...

    def step(
        self,
        fn: Any = None,
        /,
        *,
        name: str | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Make a function a journaled step when called inside a workflow (a plain call
        outside one). ``def`` steps run in a thread, off the event loop."""

        def register(fn: F) -> F:
            definition = make_step(fn, name=name, retry=retry, timeout=timeout)
            self._steps[definition.name] = definition
            return step_wrapper(definition)  # type: ignore[return-value]

        return register(fn) if fn is not None else register

    def queue(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        per_key: int | None = None,
        rate: Rate | None = None,
        key_label: str | None = "tenant",
    ) -> Queue:
        """Declare the named queue `name`: at most `concurrency` of its runs running across all
        workers, at most `per_key` running with one key (``app.start(..., queue=name,
        key="acme")``; the key defaults to the run's `key_label` label), and starts at most at
        `rate` (per second, or ``(count, timedelta)``). Runs waiting for capacity stay
        ``queued``. See `tether.engine.queues`."""
        declared = Queue(name, concurrency, per_key, rate, key_label)
        self.queues[name] = declared
        self._queues_saved = False
        return declared

    def rate_limit(
        self,
        model: str,
        *,
        requests: int | None = None,
        tokens: int | None = None,
        per: timedelta | float = timedelta(minutes=1),
    ) -> RateLimit:
        """Limit the requests (and estimated tokens) sent to `model` (``provider:model``, or
        ``provider:*`` for all of a provider's models) to `requests`/`tokens` per `per`,
        shared by every worker through the store. A model step that would exceed it waits
        (durably when long) instead of being answered 429. See `tether.engine.ratelimits`."""
        limit = make_limit(model, requests, tokens, per)
        self.rate_limits[model] = limit
        return limit

    async def _save_queues(self) -> None:
        if not self._queues_saved:
            for declared in list(self.queues.values()):
                await self.store.put_queue(declared.record())
            self._queues_saved = True

    def schedule(
        self,
        cron: str,
        workflow: str | Callable[..., Any] | None = None,
        *,
        input: dict[str, Any] | None = None,
        timezone: str = "UTC",
        name: str | None = None,
        labels: dict[str, str] | None = None,
        overlap: Overlap = "skip",
        catchup: Catchup = "latest",
    ) -> Any:
        """Start `workflow` on the cron expression `cron` (five fields, or six with leading
        seconds) in `timezone`: exactly one run per tick across all workers (the tick is the
        run id). Without `workflow` it is a decorator to put above ``@app.workflow``.
        `overlap` (``skip``/``queue``/``allow``) says what a tick does while the previous
        scheduled run is unfinished; `catchup` (``latest``/``all``/``none``) which ticks missed
        while no worker ran are started. Returns the `Schedule` (or the decorated function)."""

        def declare(target: str | Callable[..., Any]) -> Schedule:
            wf = target if isinstance(target, str) else getattr(target, "__tether_workflow__", None)
            if not wf:
                raise UserError(
                    f"{target!r} is not a workflow: pass its name, or put @app.schedule(...) "
                    "above @app.workflow"
                )
            declared = Schedule(
                name=name or wf, cron=cron, workflow=wf, input=dict(input or {}),
                timezone=timezone, labels=dict(labels or {}), overlap=overlap, catchup=catchup,
            )
            known = self.get_workflow(wf)
            if known is not None:  # a bad input fails now, not at the first tick (next Monday)
                known.validate_input(declared.input)
            if declared.name in self.schedules and self.schedules[declared.name] != declared:
                raise UserError(
                    f"schedule {declared.name!r} is declared twice; give the second a name="
                )
            self.schedules[declared.name] = declared
            return declared

        if workflow is not None:
            return declare(workflow)

        def decorator(fn: F) -> F:
            declare(fn)
            return fn

        return decorator

    def workflow_keys(self) -> list[tuple[str, str]]:
        return list(self._workflows)

    def workflow_names(self) -> list[str]:
        return sorted(self._latest)

    def get_workflow(self, name: str, version: str | None = None) -> WorkflowDef | None:
        if version is None:
            return self._latest.get(name)
        return self._workflows.get((name, version))

    # --- client API (async core) --------------------------------------------------------------

    async def start_async(
        self,
        workflow: str | Callable[..., Any],
        input: dict[str, Any] | None = None,
        *,
        run_id: str | None = None,
        labels: dict[str, str] | None = None,
        budget: Budget | None = None,
        delay: float | timedelta | None = None,
        started_by: str | None = None,
        queue: str | None = None,
        key: str | None = None,
        priority: int = 0,
    ) -> RunHandle:
        """Queue a run. `started_by` is who starts it (default: the OS login name); that
        identity may not decide the run's approval requests. `queue` puts it in a named queue
        (`queue`) with `key` (default: the queue's key label) and `priority` (higher first)."""
        new = self._new_run(workflow, input, run_id, labels, budget, delay, started_by)
        if queue is not None:
            new = self._in_queue(new, queue, key, priority)
        elif key is not None:
            raise UserError("app.start(key=...) needs queue=...: a key counts within a queue")
        if new.queue is not None:
            await self._save_queues()
        run, _, created = await self.store.create_run(new)
        if not created and run.workflow != new.workflow:
            raise UserError(
                f"run id {new.id!r} is already used by a run of workflow {run.workflow!r}"
            )
        return RunHandle(self, run.id)

    async def signal_async(self, run_id: str, name: str, data: Any = None) -> None:
        if name.startswith("tether."):
            # Reserved for tether's own waits; a stray one would wake a run that cannot
            # proceed (a budget-parked run would spin between queued and waiting).
            hint = (
                "use app.raise_budget() or `tether budget RUN` to resume a run parked on its budget"
                if name == BUDGET_SIGNAL
                else "send it under a name of your own"
            )
            raise UserError(f"signal names starting with 'tether.' are reserved ({name!r}); {hint}")
        run = await self.store.get_run(run_id)
        if run is None:
            raise UnknownRun(run_id)
        if run.status in FINISHED_STATUSES:
            raise UserError(
                f"run {run_id} already ended ({run.status}); signal {name!r} was not delivered"
            )
        await self._refuse_approval_signal(run_id, name)
        from tether.engine.serde import to_jsonable

        payload = to_jsonable(data, what=f"the payload of signal {name!r}")
        if await self.store.send_signal(run_id, name, payload) is None:
            raise UnknownRun(run_id)

    async def _refuse_approval_signal(self, run_id: str, name: str) -> None:
        """A run waiting on approval request X waits for ``approval:X``; only a recorded
        decision (`approve_async` / `reject_async`, which check the reviewer and send the signal
        in the same transaction) may wake it. A generic signal of that name is refused here:
        delivered, it would not be a valid decision and would fail the run (ApprovalMismatch)."""
        prefix, sep, approval_id = name.partition(":")
        if prefix != APPROVAL_SIGNAL_PREFIX or not sep or not approval_id:
            return
        action = await self.store.get_trust_action(approval_id)
        if action is None:
            if approval_id.startswith(f"{run_id}-"):
                # This run's own request ids are `<run id>-<seq>`: sent before the run asks,
                # the signal would wait in the mailbox and be taken as the decision.
                raise UserError(
                    f"signal {name!r} is reserved for the decision of approval request "
                    f"{approval_id} of run {run_id}, which the run has not made yet; only a "
                    "recorded decision (`tether approve` / `tether reject`) may send it"
                )
            return  # the workflow's own signal that happens to look alike
        where = "" if action.run_id == run_id else f" of run {action.run_id}"
        raise UserError(
            f"signal {name!r} is the decision of approval request {approval_id}{where} "
            f"({action.status}) and cannot be sent as a plain signal; decide it with "
            f"`tether approve {approval_id}` or `tether reject {approval_id} --reason …` "
            "(app.approve / app.reject, or the dashboard's approval page)"
        )

    async def get_run_async(self, run_id: str) -> RunInfo:
        loaded = await self.store.load_run(run_id)
        if loaded is None:
            raise UnknownRun(run_id)
        return RunInfo.from_records(*loaded, await cut_calls(self.store, loaded[0]))

    async def run_events_async(
        self, run_id: str, *, after: int = 0, limit: int = 500, check_finished: bool = True
    ) -> list[RunEvent]:
        """The run's events after position `after`, oldest first (the SSE endpoint's read);
        raises `UnknownRun` for a run that does not exist. `check_finished`: also read the run,
        to add the ``finished`` event of a run whose worker died before appending it."""
        events = await read_events(self.store, run_id, after=after, limit=limit,
                                   check_finished=check_finished)
        if not events and check_finished and await self.store.get_run(run_id) is None:
            raise UnknownRun(run_id)
        return events

    async def list_runs_async(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        labels: dict[str, str] | None = None,
        limit: int = 50,
        degraded: bool | None = None,
        id_contains: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: tuple[float, str] | None = None,
    ) -> list[RunInfo]:
        """Runs, newest first; the filters are `Store.list_runs`'s (`before` is a page
        cursor: the ``(created_at, id)`` of the previous page's last run)."""
        if status is not None and status not in RUN_STATUSES:
            raise UserError(f"unknown status {status!r}; use one of {', '.join(RUN_STATUSES)}")
        runs = await self.store.list_runs(
            status=status, workflow=workflow, labels=labels, limit=limit,
            id_contains=id_contains, since=since, until=until, before=before,
        )
        infos = [RunInfo.from_records(run, await self.store.load_steps(run.id)) for run in runs]
        if degraded is not None:
            # The mark lives in the journal (each run's journal is loaded here anyway).
            infos = [info for info in infos if bool(info.degraded) == degraded]
        return infos

    async def cancel_async(self, run_id: str, reason: str = "cancelled by request") -> RunInfo:
        run = await self.store.cancel_run(run_id, reason)
        if run is None:
            raise UnknownRun(run_id)
        ctx = self.live_contexts.get(run_id)
        if ctx is not None:
            ctx.request_cancel()
        await self._cancel_family(run, reason)
        return await self.get_run_async(run_id)

    async def _cancel_family(self, run: RunRecord, reason: str) -> None:
        """A cancel reaches a run's unfinished children (found in its journal), and a child
        that the cancel ended at once (it held no worker) tells its parent."""
        parent = parent_of(run)
        if parent is not None and run.status == "cancelled" and run.lease_owner is None:
            await notify_parent(self.store, parent, run.id,
                                outcome_payload(run.status, None, run.error, None))
        for rec in await self.store.load_steps(run.id):
            if rec.kind == CHILD_KIND and rec.status == "completed" and isinstance(rec.output, str):
                child = await self.store.get_run(rec.output)
                if child is not None and child.status not in FINISHED_STATUSES:
                    await self.cancel_async(child.id, f"parent {run.id} cancelled: {reason}")

    async def fork_async(
        self,
        run_id: str,
        from_step: int | None = None,
        *,
        version: str | None = None,
        started_by: str | None = None,
    ) -> RunHandle:
        """See `fork`. The new run is started by `started_by` (default: the OS login name),
        not by whoever started the source."""
        loaded = await self.store.load_run(run_id)
        if loaded is None:
            raise UnknownRun(run_id)
        source, journal = loaded
        end = max((entry.seq for entry in journal), default=0) + 1
        if from_step is None:
            from_step = end
        if not 1 <= from_step <= end:
            raise UserError(
                f"run {run_id} has {end - 1} journal entries, so from_step must be between 1 "
                f"and {end} (steps are numbered from 1; {end} keeps every completed step); "
                f"got {from_step}; nothing was forked"
            )
        known = sorted((v for n, v in self._workflows if n == source.workflow), key=version_key)
        if version is not None and known and version not in known:
            # This app has the workflow, so it knows its versions (a client App does not).
            raise UserError(
                f"workflow {source.workflow!r} has no version {version!r} in this app "
                f"(it has {', '.join(known)}); nothing was forked"
            )
        new_id = new_run_id()
        new = NewRun(
            id=new_id,
            workflow=source.workflow,
            version=version if version is not None else source.version,
            input=source.input,
            labels={**source.labels, STARTED_BY_LABEL: started_by or self.starter()},
            budget=source.budget,
            parent_id=source.id,
        )
        # Moving a run onto another version supersedes it: two live copies of one run on two
        # versions would both act (send the email twice) if an old worker came back.
        supersede = (
            f"{SUPERSEDED}{version} as run {new_id} (fork from step {from_step})"
            if version is not None
            else None
        )
        run = await self.store.fork_run(source.id, from_step, new, supersede=supersede)
        return RunHandle(self, run.id)

    async def raise_budget_async(self, run_id: str, budget: Budget) -> RunInfo:
        """Replace a run's budget; a run suspended on its budget resumes."""
        run = await self.store.set_budget(run_id, budget.to_dict())
        if run is None:
            raise UnknownRun(run_id)
        return await self.get_run_async(run_id)

    async def prune_async(self, older_than: timedelta | float) -> int:
        """Delete runs that finished more than `older_than` ago, with journals and mailboxes."""
        seconds = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
        return await self.store.prune(time.time() - seconds)

    async def run_async(
        self,
        workflow: str | Callable[..., Any],
        input: dict[str, Any] | None = None,
        *,
        run_id: str | None = None,
        labels: dict[str, str] | None = None,
        budget: Budget | None = None,
        started_by: str | None = None,
    ) -> RunInfo:
        """Start (or pick up) a run and execute it in this process until it finishes, suspends
        or fails."""
        self.prepare()
        owner = f"{default_worker_name()}:run:{secrets.token_hex(4)}"
        leases = Leases(self.store, owner, self.lease_seconds, live=self.live_contexts)
        sent = time.monotonic()
        existing = await self.store.get_run(run_id) if run_id is not None else None
        claim: Claim | None = None
        fresh = False
        if existing is not None:
            # Resuming: the run's own input and settings apply, whatever is passed now.
            run = existing
            if run.status not in FINISHED_STATUSES:
                claim = await self.store.claim_run(run.id, owner, lease_seconds=self.lease_seconds)
        else:
            new = self._new_run(workflow, input, run_id, labels, budget, None, started_by)
            run, token, created = await self.store.create_run(
                new, owner=owner, lease_seconds=self.lease_seconds
            )
            if created and token is not None:
                claim = Claim(run=run, token=token, recovered=False)
                fresh = True
            elif run.status not in FINISHED_STATUSES:
                claim = await self.store.claim_run(
                    run.id, owner, lease_seconds=self.lease_seconds
                )
        if claim is not None:
            quiet_control_flow(asyncio.get_running_loop())
            leases.hold(run.id, sent)
            # Started only when first due: most runs of `run` end before either is.
            beat = Later(self.lease_seconds / 3, lambda: leases.keep(first=0.0))
            cancels = Later(CANCEL_WATCH, lambda: watch_cancels(
                self.store, owner, self.live_contexts, lambda: True, first=0.0))
            try:
                await self.executor.execute(claim, fresh=fresh, leases=leases, keep_journal=True)
            finally:
                beat.cancel()
                cancels.cancel()
            finished = self.executor.take_finished(run.id)
            if finished is not None:
                # Finished here: the journal is what this process wrote, the row what the
                # store's finish returned (its end as the store stamped it); nothing is read.
                cut = await cut_calls(self.store, finished[0]) if finished[0].fencing > 1 else None
                return RunInfo.from_records(*finished, cut)
        return await self.get_run_async(run.id)

    async def run_worker_async(
        self,
        *,
        concurrency: int = 100,
        name: str | None = None,
        stop: asyncio.Event | None = None,
        grace_period: float = 10.0,
    ) -> None:
        """Run a worker in the current event loop until `stop` is set."""
        self.prepare()
        await self._save_queues()
        worker = Worker(self, concurrency=concurrency, name=name, grace_period=grace_period)
        await worker.run(stop or asyncio.Event())

    def prepare(self) -> None:
        """Called once before this Runtime first executes a run (`run`, a worker). The engine
        adds nothing here; `tether.App` joins the observe layer's span export."""

    # --- synchronous twins -----------------------------------------------------------------------

    def start(
        self,
        workflow: str | Callable[..., Any],
        input: dict[str, Any] | None = None,
        *,
        run_id: str | None = None,
        labels: dict[str, str] | None = None,
        budget: Budget | None = None,
        delay: float | timedelta | None = None,
        started_by: str | None = None,
        queue: str | None = None,
        key: str | None = None,
        priority: int = 0,
    ) -> RunHandle:
        """Queue a run; with `run_id`, starting twice returns the same run. `started_by` is
        who starts it (default: the OS login name). `queue`, `key`, `priority`: see
        `queue` and `start_async`."""
        return self.portal.run(
            self.start_async(
                workflow, input, run_id=run_id, labels=labels, budget=budget, delay=delay,
                started_by=started_by, queue=queue, key=key, priority=priority,
            )
        )

    def signal(self, run_id: str, name: str, data: Any = None) -> None:
        """Deliver a signal to the run's mailbox (kept until the run waits for it)."""
        self.portal.run(self.signal_async(run_id, name, data))

    def get_run(self, run_id: str) -> RunInfo:
        return self.portal.run(self.get_run_async(run_id))

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        labels: dict[str, str] | None = None,
        limit: int = 50,
        degraded: bool | None = None,
    ) -> list[RunInfo]:
        """Newest first. `degraded=True` keeps runs that carried on past a failed optional or
        fallback node (``False``: those that did not); applied to the `limit` newest runs."""
        return self.portal.run(
            self.list_runs_async(
                status=status, workflow=workflow, labels=labels, limit=limit, degraded=degraded
            )
        )

    def cancel(self, run_id: str, reason: str = "cancelled by request") -> RunInfo:
        """Cancel a queued or waiting run now. A running one is interrupted by the process that
        holds it: at once in this process, within about half a second in another."""
        return self.portal.run(self.cancel_async(run_id, reason))

    def fork(
        self,
        run_id: str,
        from_step: int | None = None,
        *,
        version: str | None = None,
        started_by: str | None = None,
    ) -> RunHandle:
        """A new run of the same workflow and input that reuses the completed journal entries
        before `from_step` (those steps are not executed again). `from_step` defaults to just
        past the last journal entry: keep everything completed, redo the rest.

        With `version`, the new run is pinned to that workflow version (replay on the new
        code checks the reused entries' names: a mismatch fails it with
        `NonDeterminismError`), and it *replaces* the source: the source's unconsumed signals
        move to the new run and an unfinished source is cancelled, in one transaction. This
        is how a run stranded by a deploy that dropped its version moves onto the new code.
        `started_by` is who forks it (default: the OS login name).
        """
        return self.portal.run(
            self.fork_async(run_id, from_step, version=version, started_by=started_by)
        )

    def raise_budget(self, run_id: str, budget: Budget) -> RunInfo:
        return self.portal.run(self.raise_budget_async(run_id, budget))

    def prune(self, older_than: timedelta | float) -> int:
        return self.portal.run(self.prune_async(older_than))

    def run(
        self,
        workflow: str | Callable[..., Any],
        input: dict[str, Any] | None = None,
        *,
        run_id: str | None = None,
        labels: dict[str, str] | None = None,
        budget: Budget | None = None,
        started_by: str | None = None,
    ) -> RunInfo:
        """Start and execute here, now, durably, until the run finishes, suspends or fails."""
        return self.portal.run(
            self.run_async(
                workflow, input, run_id=run_id, labels=labels, budget=budget,
                started_by=started_by,
            )
        )

    def run_worker(
        self, concurrency: int = 100, *, name: str | None = None, grace_period: float = 10.0
    ) -> None:
        """Run a worker in this thread until SIGTERM or SIGINT (then shut down gracefully)."""

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            if threading.current_thread() is threading.main_thread():
                for sig in (signal_module.SIGTERM, signal_module.SIGINT):
                    loop.add_signal_handler(sig, stop.set)
            await self.run_worker_async(
                concurrency=concurrency, name=name, stop=stop, grace_period=grace_period
            )

        asyncio.run(main())

    def close(self) -> None:
        """Close the store's connections (optional; they close with the process)."""
        closer = getattr(self.store, "close_sync", None)
        if callable(closer):
            closer()
        else:
            self.portal.run(self.store.close())

    # --- internals -------------------------------------------------------------------------------

    def _in_queue(self, new: NewRun, queue: str, key: str | None, priority: int) -> NewRun:
        declared = self.queues.get(queue)
        if declared is None:
            raise UserError(
                f"queue {queue!r} is not declared in this app; call app.queue({queue!r}, ...) "
                "first"
            )
        if key is None and declared.key_label is not None:
            key = new.labels.get(declared.key_label)
        if key is not None and not _is_str(key):
            raise UserError(f"app.start(key=...) must be a string, got {key!r}")
        if not isinstance(cast(object, priority), int) or not -(2**31) < priority < 2**31:
            raise UserError(f"app.start(priority=...) must be an integer between -2147483647 and "
                            f"2147483647 (a 32-bit column), got {priority!r}")
        return dataclasses.replace(new, queue=queue, queue_key=key, priority=priority)

    def _new_run(
        self,
        workflow: str | Callable[..., Any],
        input: dict[str, Any] | None,
        run_id: str | None,
        labels: dict[str, str] | None,
        budget: Budget | None,
        delay: float | timedelta | None,
        started_by: str | None = None,
    ) -> NewRun:
        name = workflow if isinstance(workflow, str) else getattr(workflow, "__tether_workflow__", None)
        if not name:
            raise UserError(f"{workflow!r} is not a workflow; pass its name or an @app.workflow function")
        definition = self._latest.get(name)
        if definition is not None:
            canonical = definition.canonical_input(input)
            version: str | None = definition.version
        elif self._latest:
            raise UnknownWorkflow(name, list(self._latest))
        else:
            # A pure client (no workflows registered here) may start any workflow by name;
            # the first worker that has it pins the version.
            if not _is_object(input):
                raise UserError(f"workflow input must be a JSON object, got {type(input).__name__}")
            canonical, version = dict(input or {}), None
        for key, value in (labels or {}).items():
            if not (_is_str(key) and _is_str(value)):
                raise UserError(f"labels must map strings to strings; got {key!r}: {value!r}")
        if run_id is not None and not (_is_str(run_id) and run_id.strip()):
            raise UserError(f"a run id must be a non-empty string, got {run_id!r}; leave it out "
                            "to have one made")
        seconds = None if delay is None else wait_seconds(delay, "app.start(delay=)")
        recorded = dict(labels or {})
        # The starter is always recorded (the same-user rule of approvals depends on it).
        recorded[STARTED_BY_LABEL] = (
            started_by or recorded.get(STARTED_BY_LABEL) or self.starter()
        )
        return NewRun(
            id=run_id or new_run_id(),
            workflow=name,
            version=version,
            input=canonical,
            labels=recorded,
            budget=budget.to_dict() if budget is not None else None,
            wake_at=time.time() + seconds if seconds else None,
        )


def _is_object(value: object) -> bool:
    """Callers pass untyped JSON; check what the annotations only promise."""
    return value is None or isinstance(value, dict)


def _is_str(value: object) -> bool:
    return isinstance(value, str)
