"""Execute one claimed run: replay its journal, carry it on, and record how it ended."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, cast

from tether.engine.budget import Budget, Usage
from tether.engine.children import (
    cancel_reason,
    cancels_children,
    notify_parent,
    outcome_payload,
    parent_of,
)
from tether.engine.context import Context, bound, error_record
from tether.engine.control import CancelRun, DropRun, RefuseRun, Suspend
from tether.engine.events import EventLog
from tether.engine.serde import to_jsonable
from tether.errors import RunFailed, StepFailed, StoreUnavailable
from tether.store.base import FINISHED_STATUSES, Claim, RunRecord, StepRecord, Store

if TYPE_CHECKING:
    from tether.engine.lease import Leases
    from tether.engine.registry import WorkflowDef

log = logging.getLogger("tether.engine")


class RunExecutor:
    """Runs claimed runs of the workflows it knows. Shared by workers and `App.run`."""

    def __init__(
        self,
        store: Store,
        workflows: dict[tuple[str, str], WorkflowDef],
        *,
        max_recoveries: int,
        executor: Executor | None,
        live: dict[str, Context],
        app: object = None,
        events: EventLog | None = None,
        cancel: Callable[[str, str], Awaitable[Any]] | None = None,
    ) -> None:
        self._app = app
        self._cancel = cancel
        """`App.cancel_async`: how a cancelled run's worker cancels the children it started."""
        self._events = events
        self._store = store
        self._workflows = workflows
        self._max_recoveries = max_recoveries
        self._executor = executor
        self._live = live
        self._parents: dict[str, str] = {}
        """Runs being executed that are child runs: their parents, told when they end."""
        self._keeping: dict[str, RunRecord | None] = {}
        """Runs executed with `keep_journal`: their rows as the store finished them, once it has."""
        self._kept: dict[str, tuple[RunRecord, list[StepRecord]]] = {}
        self.listeners: list[Callable[[str, str], Awaitable[None]]] = []
        """Called with ``(run_id, status)`` after a run ends or suspends (not when dropped)."""

    async def execute(
        self, claim: Claim, *, fresh: bool = False, leases: Leases | None = None,
        keep_journal: bool = False,
    ) -> str:
        """Returns the status the run was left in, or ``dropped`` if the lease was lost.
        `fresh`: the run was created claimed a moment ago, so its journal is known empty.
        `leases`: the holder's leases; with them no step starts unless the run's lease can be
        relied on (`Leases.ensure`). `keep_journal`: when the run finishes here, keep its row
        as the store finished it and its journal as written for `take_finished` (so `App.run`
        need not read either back)."""
        run = claim.run
        parent = parent_of(run)
        if keep_journal:
            self._keeping[run.id] = None
        if parent is not None:
            self._parents[run.id] = parent
        try:
            return await self._execute(claim, fresh=fresh, leases=leases, keep=keep_journal)
        finally:
            self._parents.pop(run.id, None)
            self._keeping.pop(run.id, None)

    def take_finished(self, run_id: str) -> tuple[RunRecord, list[StepRecord]] | None:
        """The row and journal of a run that `execute` (with `keep_journal`) finished: the row
        as the store's finish returned it, the journal as written."""
        return self._kept.pop(run_id, None)

    async def _execute(
        self, claim: Claim, *, fresh: bool = False, leases: Leases | None = None,
        keep: bool = False,
    ) -> str:
        run, token = claim.run, claim.token
        if claim.recovered and claim.stalls > self._max_recoveries:
            # Evidence, not a count of takeovers: only holders lost with no step journaled since
            # they claimed it count (see "Stalls" in store/base.py). A run taken over again and
            # again while it progresses (a rolling deploy, kills elsewhere) is healthy.
            where = ""
            if run.progress and run.progress.get("name"):
                where = f" in step {run.progress['name']!r} (seq {run.progress.get('seq')})"
            return await self._end(
                run.id,
                token,
                "failed",
                error={
                    "type": "PoisonRun",
                    "message": (
                        f"run {run.id} lost {claim.stalls} worker"
                        f"{'s' if claim.stalls != 1 else ''} in a row{where} without "
                        f"journaling a step in between (max_recoveries={self._max_recoveries}); "
                        f"it probably crashes its worker (memory, a native crash in a step). "
                        f"Inspect it with `tether show {run.id}`, fix the cause, then "
                        f"`tether fork`."
                    ),
                    "details": {"stalls": claim.stalls, "recoveries": run.recoveries},
                },
            )
        if run.cancel_requested:
            return await self._end(run.id, token, "cancelled", error=run.error)
        parent = parent_of(run)
        above = await self._store.get_run(parent) if parent is not None else None
        if above is not None and cancels_children(above):
            # Started by a parent that was being cancelled (a start the cancel cut short, or
            # one made after `App.cancel` read the parent's journal): cancelled, not run.
            error = {"type": "RunCancelled", "message": cancel_reason(above)}
            return await self._end(run.id, token, "cancelled", error=error)
        definition = self._workflows.get((run.workflow, run.version or ""))
        if definition is None:  # claims filter by version; only a registry change gets here
            await self._store.release_run(run.id, token)
            return "queued"
        if fresh:
            journal: list[StepRecord] = []
        elif claim.journal is not None:
            journal = claim.journal
        else:
            journal = await self._store.load_steps(run.id)
        budget = Budget.from_dict(run.budget)
        if definition.budget is not None:
            budget = definition.budget.merged(budget)
        # Calls an earlier holder of a budgeted run had in flight when it died: not journaled,
        # maybe billed, and sent again now — so they count against the budget.
        lost = [Usage.from_dict(u) for u in await self._store.lost_holds(run.id, token)] if (
            budget is not None and not fresh) else []
        ctx = Context(
            run=run,
            token=token,
            store=self._store,
            journal=journal,
            budget=budget,
            executor=self._executor,
            app=self._app,
            leases=leases,
            lost=lost,
            resent=_lost_in(run) if claim.recovered else None,
        )
        self._live[run.id] = ctx
        try:
            with bound(ctx):
                status = await self._drive(definition, ctx, token)
        finally:
            self._live.pop(run.id, None)
        if keep and status in FINISHED_STATUSES:
            ended = self._keeping.get(run.id)
            if ended is not None:
                self._kept[run.id] = (ended, ctx.written_journal())
        if status != "dropped":
            for listener in self.listeners:
                try:
                    await listener(run.id, status)
                except Exception:
                    log.exception("run %s: a run listener failed", run.id)
        return status

    async def _drive(self, definition: WorkflowDef, ctx: Context, token: int) -> str:
        run_id = ctx.run_id
        try:
            try:
                kwargs = definition.validate_input(ctx.input)
                result = await _call_workflow(definition, ctx, kwargs)
                # A stop that workflow code swallowed (asyncio.wait over waits) still applies;
                # a swallowed suspension fails the run rather than recording a success.
                ctx.check_returned()
                if ctx.fatal is not None:
                    raise ctx.fatal
                await ctx.flush()
                output = to_jsonable(result, what=f"the result of workflow {ctx.workflow!r}")
            except Suspend as suspend:
                await ctx.settle()
                status = await self._store.suspend_run(
                    run_id, token, wake_at=suspend.wake_at, waiting_for=suspend.waiting_for
                )
                return status if status is not None else await self._lost(run_id, token)
            return await self._end(run_id, token, "succeeded", output=output)
        except (CancelRun, DropRun) as stop:
            return await self._stopped(stop, ctx, token)
        except StoreUnavailable as exc:
            log.warning("run %s: store unavailable (%s); leaving it for takeover", run_id, exc)
            return "dropped"
        except RefuseRun as refusal:
            error = {
                "type": "RunRefused",
                "message": f"run {run_id} refused: {refusal.reason}",
                "reason": refusal.reason,
                "details": refusal.details,
            }
            return await self._end(run_id, token, "refused", error=error)
        except asyncio.CancelledError:
            # Worker shutdown: hand the run back so another worker continues at once.
            await asyncio.shield(self._store.release_run(run_id, token))
            raise
        except (Exception, SystemExit) as exc:  # sys.exit() in workflow code fails the run only
            if isinstance(ctx.stopping, CancelRun | DropRun) and ctx.fatal is None:
                # Workflow code caught the cancel (or lost lease) and raised something else.
                return await self._stopped(ctx.stopping, ctx, token)
            failure = ctx.fatal or exc
            try:
                await ctx.drain()
            except asyncio.CancelledError:
                await asyncio.shield(self._store.release_run(run_id, token))
                raise
            return await self._end(run_id, token, "failed", error=_failure(run_id, failure))

    async def _stopped(self, stopping: BaseException, ctx: Context, token: int) -> str:
        run_id = ctx.run_id
        if isinstance(stopping, CancelRun):
            run = await self._store.get_run(run_id)
            error = dict(run.error) if run is not None and run.error else None
            if error is not None and ctx.interrupted:
                error["interrupted"] = ctx.interrupted  # steps cut short, none journaled
            return await self._end(run_id, token, "cancelled", error=error)
        log.warning("run %s: lease lost to another worker; dropping it", run_id)
        return "dropped"

    async def _end(
        self,
        run_id: str,
        token: int,
        status: str,
        *,
        output: Any = None,
        error: dict[str, Any] | None = None,
    ) -> str:
        if self._events is not None:
            self._events.before_end(run_id)
        if await self._finish(run_id, token, status, output, error):
            await self._tell_parent(run_id, status, output, error)
            if status == "cancelled":
                await self._cancel_children(run_id)
            return status
        return await self._lost(run_id, token)

    async def _finish(
        self, run_id: str, token: int, status: str, output: Any, error: dict[str, Any] | None
    ) -> bool:
        ended = await self._store.finish_run(
            run_id, token, status=status, output=output, error=error
        )
        if ended is not None and run_id in self._keeping:
            self._keeping[run_id] = ended
        return ended is not None

    async def _lost(self, run_id: str, token: int) -> str:
        run = await self._store.get_run(run_id)
        cancelled = run is not None and run.fencing == token and run.cancel_requested
        if cancelled and await self._finish(
            run_id, token, "cancelled", None, run.error if run else None
        ):
            await self._tell_parent(run_id, "cancelled", None, run.error if run else None)
            await self._cancel_children(run_id)
            return "cancelled"
        log.warning("run %s: lease lost to another worker; dropping it", run_id)
        return "dropped"

    async def _cancel_children(self, run_id: str) -> None:
        """A run this worker executed ended cancelled: cancel the unfinished children it
        started. `App.cancel` cancels those in the journal when it is called; this reaches the
        ones it could not see (started after it read the journal, or by a start the cancel cut
        short before it was journaled)."""
        ctx = self._live.get(run_id)
        if self._cancel is None or ctx is None or not ctx.children:
            return
        run = await self._store.get_run(run_id)
        if run is None or not cancels_children(run):
            return
        for child_id in ctx.children:
            child = await self._store.get_run(child_id)
            if child is None or child.status in FINISHED_STATUSES:
                continue
            try:
                await self._cancel(child_id, cancel_reason(run))
            except StoreUnavailable:
                log.warning("run %s: could not cancel its child %s; a worker that claims it "
                            "will", run_id, child_id)

    async def _tell_parent(
        self, run_id: str, status: str, output: Any, error: dict[str, Any] | None
    ) -> None:
        """A child run ended: send its parent the outcome. Right after the end, not in its
        transaction: a parent whose child's worker died in between finds the outcome itself
        when it next wakes (`tether.engine.children`)."""
        parent = self._parents.get(run_id)
        if parent is None:
            return
        ctx = self._live.get(run_id)
        payload = outcome_payload(status, output, error, ctx.spent if ctx is not None else None)
        try:
            await notify_parent(self._store, parent, run_id, payload)
        except StoreUnavailable:
            log.warning("run %s: could not tell parent %s it ended; it will look", run_id, parent)


_CONTROL_FLOW = (Suspend, CancelRun, DropRun, RefuseRun)


async def _call_workflow(definition: WorkflowDef, ctx: Context, kwargs: dict[str, Any]) -> Any:
    """Call the workflow function. A control-flow signal raised inside an `asyncio.TaskGroup`
    (or any code that groups exceptions) reaches us wrapped in an exception group: unwrap it,
    so a TaskGroup over waits suspends the run as `gather` does instead of escaping the
    executor and leaving the run stuck ``running``."""
    try:
        return await definition.fn(ctx, **kwargs)
    except BaseExceptionGroup as group:
        signals, _ = group.split(_CONTROL_FLOW)
        if signals is None:
            raise
        if ctx.stopping is not None:
            raise ctx.stopping from None
        raise _first_leaf(signals) from None


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = cast("BaseExceptionGroup[BaseException]", error).exceptions[0]
    return error


def _failure(run_id: str, exc: BaseException) -> dict[str, Any]:
    record = error_record(exc)
    if isinstance(exc, RunFailed):
        record["type"] = exc.error_type
        record["details"] = to_jsonable(exc.details, what="error details")
    elif isinstance(exc, StepFailed):
        record["message"] = f"run {run_id}: {exc}"
        record["details"] = {"step": exc.step, "seq": exc.seq, "cause": exc.error_type}
    return record


def _lost_in(run: RunRecord) -> int | None:
    """The step a lost holder was in at its last heartbeat (`RunRecord.progress`, kept by the
    takeover): its call may have been sent. If that holder journaled the step's outcome after
    all, the step replays and is not journaled again, so the mark is never written."""
    seq = (run.progress or {}).get("seq")
    return seq if isinstance(seq, int) else None
