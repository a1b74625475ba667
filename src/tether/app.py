"""`App`: the façade users import — the engine's `Runtime` plus what the layers above it add.

The engine (`tether.engine.runtime.Runtime`) registers workflows and steps, starts, signals and
runs them; it knows nothing of agents, trust or spans. `App` sits above all the layers and joins
them: the trust policy and its approvals and evidence, agents and pydantic-ai agents registered
as workflows, and the observe layer's OpenTelemetry export. Those layers are imported when first
used, so ``import tether; tether.App`` stays as light as the engine (no pydantic-ai).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from tether.access.principals import login_name
from tether.engine.retention import Retention
from tether.engine.runtime import Runtime
from tether.errors import UserError
from tether.store.base import Store

if TYPE_CHECKING:
    from tether.agents.gate import Authorization, ToolCallRequest
    from tether.engine.context import Context
    from tether.observe.alerts import AlertConfig
    from tether.trust.approvals import Approval
    from tether.trust.evidence import TrustReportRow
    from tether.trust.policy import Policy

log = logging.getLogger("tether.app")


class App(Runtime):
    """A tether application: its workflows, steps, store and client API.

    `store` is a URL (``sqlite:///tether.db``, ``postgresql://…``) or a `Store`; default
    ``$TETHER_STORE``, else ``sqlite:///tether.db``. `policy` is the trust policy
    (`tether.Policy`) that decides which tool calls run, wait for review or are denied.
    """

    def __init__(
        self,
        store: str | Store | None = None,
        *,
        lease_seconds: float = 10.0,
        max_recoveries: int = 5,
        policy: Policy | None = None,
        version: str | None = None,
        retention: Retention | None = None,
    ) -> None:
        super().__init__(
            store,
            lease_seconds=lease_seconds,
            max_recoveries=max_recoveries,
            version=version,
            retention=retention,
            starter=login_name,
        )
        self.policy = policy
        """The trust policy (see `tether.Policy`); the trust gate reads it for each tool call."""
        self._prepared = False

    def alerts(self, webhook: str | None = None, **options: Any) -> AlertConfig:
        """Page someone: every worker of this App watches for stuck runs, flagged changes,
        spend limits passing 80 % / 100 % and workflow versions no worker serves, records each
        occurrence once and POSTs it to `webhook` (at least once, retried). Options: see
        `tether.observe.alerts.AlertConfig`; `tether alerts` lists what was sent."""
        from tether.observe.alerts import configure

        return configure(self, webhook, **options)

    def prepare(self) -> None:
        """Before this App first executes a run (a worker, or `run` in a script): send alerts to
        ``$TETHER_ALERT_WEBHOOK`` when it is set and export spans over OTLP when ``OTEL_*`` is
        configured (`tether.observe`). The observe layer is imported only when one of those is
        set, so plain runs pay nothing."""
        if self._prepared:
            return
        self._prepared = True
        if os.environ.get("TETHER_ALERT_WEBHOOK"):
            from tether.observe.alerts import configure_from_env

            configure_from_env(self)
        if not any(key.startswith("OTEL_") for key in os.environ):
            return
        try:
            from tether.observe.export import autoinstrument

            autoinstrument(self)
        except Exception as exc:
            # A broken exporter must not stop the runs it would have described.
            log.warning("OpenTelemetry export is off: %s", exc)

    def register(self, component: Any) -> Any:
        """Register something that knows how to become a workflow: an `Agent` or pipeline
        (Sequential/Parallel/Loop), or a pydantic-ai agent made durable with
        ``capabilities=[tether.TetherDurability(app)]``."""
        hook = getattr(component, "register_on", None)
        if callable(hook):
            hook(self)
            return component
        if getattr(component, "root_capability", None) is not None:  # a pydantic-ai agent
            from tether.agents.durability import durability_of

            durability = durability_of(component)
            if durability is not None:
                durability.register_agent_on(self, component)
                return component
        raise UserError(
            f"cannot register {component!r}: expected an Agent or pipeline "
            "(Sequential/Parallel/Loop), or a pydantic-ai Agent with "
            "capabilities=[tether.TetherDurability(app)]; decorate functions with "
            "@app.workflow"
        )

    # --- trust layer: the tool-call gate, approvals and evidence ---------------------------------

    async def authorize_tool_call(self, ctx: Context, request: ToolCallRequest) -> Authorization:
        """The trust gate of this App's runs (`tether.agents.gate.ToolGate`): the agents layer
        asks it before each tool call; `tether.trust.gate.authorize` decides by `policy`."""
        from tether.trust.gate import authorize

        return await authorize(ctx, request)

    async def approvals_async(
        self, *, status: str | None = "pending", limit: int = 100
    ) -> list[Approval]:
        from tether.trust.approvals import list_approvals

        return await list_approvals(self.store, status=status, limit=limit)

    async def get_approval_async(self, approval_id: str) -> Approval:
        from tether.trust.approvals import get_approval

        return await get_approval(self.store, approval_id)

    async def approve_async(
        self, approval_id: str, *, reviewer: str, edits: dict[str, Any] | None = None
    ) -> Approval:
        from tether.trust.approvals import approve

        return await approve(self.store, approval_id, reviewer=reviewer, edits=edits)

    async def reject_async(self, approval_id: str, *, reviewer: str, reason: str) -> Approval:
        from tether.trust.approvals import reject

        return await reject(self.store, approval_id, reviewer=reviewer, reason=reason)

    async def trust_report_async(self) -> list[TrustReportRow]:
        from tether.trust.evidence import trust_report
        from tether.trust.policy import Policy

        policy = self.policy if isinstance(self.policy, Policy) else None
        return await trust_report(self.store, policy)

    def approvals(self, *, status: str | None = "pending", limit: int = 100) -> list[Approval]:
        """Approval requests, newest first; ``status=None`` lists decided ones too."""
        return self.portal.run(self.approvals_async(status=status, limit=limit))

    def get_approval(self, approval_id: str) -> Approval:
        return self.portal.run(self.get_approval_async(approval_id))

    def approve(
        self, approval_id: str, *, reviewer: str, edits: dict[str, Any] | None = None
    ) -> Approval:
        """Approve a request (with `edits` replacing arguments, validated against the tool's
        schema); the run resumes and calls the tool once with exactly those arguments."""
        return self.portal.run(self.approve_async(approval_id, reviewer=reviewer, edits=edits))

    def reject(self, approval_id: str, *, reviewer: str, reason: str) -> Approval:
        """Reject a request; the reason reaches the agent as the tool's result."""
        return self.portal.run(self.reject_async(approval_id, reviewer=reviewer, reason=reason))

    def trust_report(self) -> list[TrustReportRow]:
        """Per agent / category: reviews, edits, rejections, automatic actions and their later
        failures, with a recommendation to widen or narrow the ring."""
        return self.portal.run(self.trust_report_async())
