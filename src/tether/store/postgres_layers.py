"""The PostgreSQL store's statements for what the layers above the engine's core keep in the
store: schedules, alerts and metrics, the worker registry, the observe layer, tables an upper
layer keeps itself, principals and the audit trail, the trust layer's actions and ring changes.
Each method names what it does and runs one statement function (``*_sql`` modules) through the
store's own runners; `PostgresStore` mixes it in. A move out of postgres.py, which had grown
past the size one module should have."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from tether.store import alerts_sql as al
from tether.store import postgres_access_sql as pa
from tether.store import postgres_layers_sql as layers
from tether.store import postgres_workers_sql as workers
from tether.store import schedules_sql as sq
from tether.store.base import (
    WORKER_LIVE_LEASES,
    AlertRecord,
    AuditRecord,
    CutCall,
    NewAlert,
    PrincipalRecord,
    RingChangeRecord,
    RunRecord,
    ScheduleRecord,
    SpendVerdict,
    SpendWindow,
    StepRecord,
    TrustActionRecord,
    WorkerRecord,
)
from tether.store.jsontext import dumps, loads

T = TypeVar("T")


class LayerStatements:
    """Mixed into `PostgresStore`, whose runners these methods use."""

    if TYPE_CHECKING:

        async def _read(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T: ...

        async def _statement(
            self, what: str, fn: Callable[..., Awaitable[T]], *args: Any
        ) -> T: ...

        async def _transaction(
            self, what: str, fn: Callable[..., Awaitable[T]], *args: Any
        ) -> T: ...

        async def _submit(self, run_id: str, fn: Callable[[Any], Awaitable[Any]]) -> Any: ...

    # --- schedules -------------------------------------------------------------------------------

    async def put_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord:
        return await self._statement(
            f"save schedule {schedule.name}", sq.pg_put_schedule, schedule
        )

    async def get_schedule(self, name: str) -> ScheduleRecord | None:
        return await self._read(f"read schedule {name}", sq.pg_get_schedule, name)

    async def list_schedules(self, *, due_by: float | None = None) -> list[ScheduleRecord]:
        return await self._read("list schedules", sq.pg_list_schedules, due_by)

    async def set_schedule_paused(self, name: str, paused: bool) -> ScheduleRecord | None:
        return await self._statement(
            f"pause schedule {name}", sq.pg_set_schedule_paused, name, paused
        )

    async def delete_schedule(self, name: str) -> bool:
        return await self._statement(f"delete schedule {name}", sq.pg_delete_schedule, name)

    async def advance_schedule(
        self, name: str, expected: float, next_at: float, *, fired_at: float | None = None,
        run_id: str | None = None,
    ) -> bool:
        return await self._statement(
            f"advance schedule {name}", sq.pg_advance_schedule, name, expected, next_at,
            fired_at, run_id,
        )

    # --- alerts and metrics ----------------------------------------------------------------------

    async def record_alert(self, alert: NewAlert) -> AlertRecord | None:
        return await self._transaction(f"record alert {alert.key}", al.pg_record_alert, alert)

    async def claim_alerts(
        self, owner: str, *, limit: int, lease_seconds: float, only: str | None = None
    ) -> list[AlertRecord]:
        return await self._statement(
            "claim alerts to deliver", al.pg_claim_alerts, owner, limit, lease_seconds, only
        )

    async def settle_alert(
        self, alert_id: str, owner: str, *, delivered: bool, error: str | None = None,
        retry_at: float | None = None,
    ) -> bool:
        return await self._statement(
            f"record the delivery of alert {alert_id}", al.pg_settle_alert, alert_id, owner,
            delivered, error, retry_at,
        )

    async def list_alerts(
        self, *, kind: str | None = None, state: str | None = None,
        since: float | None = None, limit: int = 100,
    ) -> list[AlertRecord]:
        return await self._read("list alerts", al.pg_list_alerts, kind, state, since, limit)

    async def run_counts(self) -> list[tuple[str, str, int]]:
        return await self._read("count runs", al.pg_run_counts)

    async def queue_backlog(self, now: float) -> list[tuple[str | None, int, float | None]]:
        return await self._read("measure the queue backlog", al.pg_queue_backlog, now)

    # --- worker registry -------------------------------------------------------------------------

    async def register_worker(self, worker: WorkerRecord) -> None:
        await self._statement("register the worker", workers.register_worker, worker)

    async def touch_worker(self, owner: str) -> bool:
        return await self._statement("refresh the worker registry", workers.touch_worker, owner)

    async def remove_worker(self, owner: str) -> None:
        await self._statement("unregister the worker", workers.remove_worker, owner)

    async def list_workers(self) -> list[WorkerRecord]:
        return await self._read("list workers", workers.list_workers, WORKER_LIVE_LEASES)

    async def pending_versions(self) -> list[tuple[str, str | None, str, int]]:
        return await self._read("count pending runs", workers.pending_versions)

    # --- used by upper layers that keep their own tables ----------------------------------------

    async def write(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(connection, *args)`` in its own transaction (upper-layer tables)."""
        return await self._transaction("write", fn, *args)

    async def read(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(connection, *args)`` on a pooled autocommit connection."""
        return await self._read("read", fn, *args)

    # --- observe layer ---------------------------------------------------------------------------

    async def load_window(
        self, since: float, until: float | None = None
    ) -> list[tuple[RunRecord, list[StepRecord]]]:
        return await self._read("load runs for a report", layers.load_window, since, until)

    async def label_spend(self, key: str, value: str, since: float) -> tuple[float, int]:
        return await self._read(
            f"sum the spend of label {key}={value}", layers.label_spend, key, value, since
        )

    async def reserve_spend(
        self,
        run_id: str,
        token: int,
        reservation_id: str,
        cost_usd: float,
        windows: Sequence[SpendWindow],
    ) -> SpendVerdict | None:
        # Its own transaction on its own connection, not a batch member: it waits on advisory
        # locks, and a batch's row locks must never wait behind those.
        return await self._transaction(
            f"reserve spend for run {run_id}", layers.reserve_spend,
            run_id, token, reservation_id, cost_usd, tuple(windows),
        )

    async def release_spend(self, reservation_id: str) -> None:
        await self._statement(
            f"release spend reservation {reservation_id}", layers.release_spend, reservation_id
        )

    async def hold_usage(self, run_id: str, token: int, hold_id: str, usage: dict[str, Any]) -> None:
        await self._statement(f"hold the budget of a call of run {run_id}", layers.hold_usage,
                              run_id, token, hold_id, dumps(usage))

    async def release_hold(self, hold_id: str) -> None:
        await self._statement(f"release budget hold {hold_id}", layers.release_hold, hold_id)

    async def lost_holds(self, run_id: str, token: int) -> list[dict[str, Any]]:
        found = await self._read(f"read the budget holds of run {run_id}", layers.lost_holds,
                                 run_id, token)
        return [loads(u) for u in found]

    async def cut_calls(
        self, *, run_id: str | None = None, since: float = 0.0, until: float | None = None
    ) -> list[CutCall]:
        what = f"read the calls cut in run {run_id}" if run_id else "read the calls cut"
        return await self._read(what, layers.cut_calls, run_id, since, until)

    # --- interfaces: principals and the audit trail --------------------------------------------

    async def add_principal(self, principal: PrincipalRecord) -> bool:
        return await self._transaction(f"add principal {principal.name}", pa.add_principal, principal)

    async def get_principal(self, name: str) -> PrincipalRecord | None:
        return await self._read(f"read principal {name}", pa.get_principal, name)

    async def principal_by_token(self, token_hash: str) -> PrincipalRecord | None:
        return await self._read("check a token", pa.principal_by_token, token_hash)

    async def list_principals(self) -> list[PrincipalRecord]:
        return await self._read("list principals", pa.list_principals)

    async def has_principals(self) -> bool:
        return await self._read("look for principals", pa.has_principals)

    async def revoke_principal(self, name: str, revoked_at: float) -> bool:
        return await self._transaction(f"revoke {name}", pa.revoke_principal, name, revoked_at)

    async def add_audit(self, entry: AuditRecord) -> AuditRecord:
        return await self._transaction("record an audit entry", pa.add_audit, entry)

    async def list_audit(
        self,
        *,
        principal: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        filters = (("principal", principal), ("action", action), ("target", target))
        return await self._read("list the audit trail", pa.list_audit, filters, since, limit)

    # --- trust layer -----------------------------------------------------------------------------

    async def put_trust_action(self, action: TrustActionRecord) -> TrustActionRecord:
        return await self._submit(action.run_id, lambda c: layers.put_trust_action(c, action))

    async def get_trust_action(self, action_id: str) -> TrustActionRecord | None:
        return await self._read(f"read approval {action_id}", layers.get_trust_action, action_id)

    async def list_trust_actions(
        self,
        *,
        status: str | None = None,
        agent: str | None = None,
        category: str | None = None,
        run_id: str | None = None,
        outcome: str | None = None,
        since: float | None = None,
        limit: int = 10_000,
    ) -> list[TrustActionRecord]:
        filters = (
            ("status", status),
            ("agent", agent),
            ("category", category),
            ("run_id", run_id),
            ("outcome", outcome),
        )
        return await self._read(
            "list trust actions", layers.list_trust_actions, filters, since, limit
        )

    async def decide_trust_action(
        self,
        action_id: str,
        *,
        status: str,
        decided_by: str | None,
        decided_at: float,
        final_args: dict[str, Any] | None,
        final_digest: str | None,
        edited: bool,
        reason: str | None,
        signal: tuple[str, Any] | None,
    ) -> TrustActionRecord | None:
        decision = (status, decided_by, decided_at, final_args, final_digest, edited, reason)
        return await self._submit(
            action_id, lambda c: layers.decide_trust_action(c, action_id, decision, signal)
        )

    async def set_trust_outcome(self, action_id: str, outcome: str) -> None:
        await self._submit(action_id, lambda c: layers.set_trust_outcome(c, action_id, outcome))

    async def add_ring_change(self, change: RingChangeRecord) -> RingChangeRecord:
        return await self._submit(
            f"{change.agent}/{change.category}", lambda c: layers.add_ring_change(c, change)
        )

    async def list_ring_changes(
        self, *, agent: str | None = None, category: str | None = None
    ) -> list[RingChangeRecord]:
        return await self._read("list ring changes", layers.list_ring_changes, agent, category)
