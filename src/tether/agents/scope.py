"""`Scope`: the gate before an agent works, ending out-of-domain requests as ``refused``.

The gate is a predicate over the run's input (``allow=``) or a cheap classifier model call with
a structured verdict (``classifier=``; by default the agent's own model). Either is one journaled
step, so a replay reaches the same verdict without asking again. Tool scope — an agent calls
only its own tools — is enforced by the agent loop itself.

The classifier is itself an agent. This module does not import `tether.agents.agent` (whose
loop calls `enforce_scope`): the caller hands in a `ClassifierFactory`
(`tether.agents.agent.scope_classifier`) that builds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pydantic
from pydantic_ai.models import Model

from tether.agents.state import RunState
from tether.engine.control import RefuseRun
from tether.observe import names

if TYPE_CHECKING:
    from tether.engine.context import Context


class ScopeVerdict(pydantic.BaseModel):
    """What a scope classifier answers."""

    in_scope: bool
    reason: str


class Classifier(Protocol):
    """The agent that answers a scope question with a `ScopeVerdict`."""

    async def execute(self, ctx: Context, state: RunState) -> Any: ...


@dataclass(frozen=True)
class Scope:
    """An agent's domain, and how requests are checked against it before the agent works."""

    domain: str
    """What the agent is for, in words (shown to the classifier and in refusals)."""
    allow: Callable[[dict[str, Any]], bool | str] | None = None
    """A predicate over the run's input: ``True`` in scope; ``False`` or a reason string out."""
    classifier: Model | str | None = None
    """The model that classifies the request when there is no predicate (default: the agent's
    own model — except pydantic-ai's `FunctionModel`/`TestModel` test doubles, which get no
    hidden classifier call: give them `classifier=` or `allow=`). Use a cheap one."""
    instructions: str | None = None
    """Extra guidance for the classifier (what counts as in or out of the domain)."""


ClassifierFactory = Callable[[Scope, str, Model | str], Classifier]
"""Builds the classifier of a scope for a node from a model: ``(scope, node, model)``."""


async def enforce_scope(
    scope: Scope,
    ctx: Context,
    state: RunState,
    *,
    node: str,
    build_classifier: ClassifierFactory,
    model: Model | str | None = None,
) -> None:
    """Raise `RefuseRun` when the run's request is outside the scope's domain; `build_classifier`
    builds the classifying agent when the scope has no predicate."""
    if scope.allow is not None:
        predicate = scope.allow

        async def judge() -> dict[str, Any]:
            outcome = predicate(state.input)
            if outcome is True:
                return {"in_scope": True, "reason": "allowed by the scope predicate"}
            reason = outcome if isinstance(outcome, str) and outcome else (
                f"the request is outside this agent's domain: {scope.domain}")
            return {"in_scope": False, "reason": reason}

        verdict = await ctx.run_step(
            f"{node}.scope", judge, is_async=True,
            meta={names.NODE: node, names.AGENT_NAME: node, "tether.scope.domain": scope.domain},
            record_input=state.input,
        )
    else:
        verdict = await _classify(scope, ctx, state, node=node, model=model, build=build_classifier)
    if not verdict.get("in_scope"):
        reason = str(verdict.get("reason") or f"outside the domain {scope.domain!r}")
        raise RefuseRun(
            f"node {node!r} refused the request: {reason}",
            details={"node": node, "domain": scope.domain, "reason": reason},
        )


async def _classify(
    scope: Scope,
    ctx: Context,
    state: RunState,
    *,
    node: str,
    model: Model | str | None,
    build: ClassifierFactory,
) -> dict[str, Any]:
    chosen = scope.classifier if scope.classifier is not None else model
    if chosen is None:
        return {"in_scope": True, "reason": "no classifier configured"}
    if scope.classifier is None and _is_test_double(chosen):
        # A FunctionModel/TestModel answers only what its function was written for: asking it
        # a hidden classifier question would add calls its author never expects. Such agents
        # get a gate only with an explicit `classifier=` or `allow=`.
        return {"in_scope": True, "reason": "no classifier for a test-double model"}
    key = (id(scope), node)
    cached = _GATES.get(key)
    gate = cached[1] if cached is not None and cached[0] is scope else None
    if gate is None:
        gate = build(scope, node, chosen)
        _GATES[key] = (scope, gate)
    verdict = await gate.execute(ctx, RunState(input=state.input))
    return dict(verdict)


def _is_test_double(model: Model | str) -> bool:
    from pydantic_ai.models.function import FunctionModel
    from pydantic_ai.models.test import TestModel

    from tether.agents.offline import ScriptedModel

    if isinstance(model, ScriptedModel):  # tether's offline model scripts its classifier too
        return False
    return isinstance(model, FunctionModel | TestModel)


_GATES: dict[tuple[int, str], tuple[Scope, Classifier]] = {}
"""Classifier agents by (scope, node): built once, reused by every run. The scope is kept with
its gate, so its id cannot be reused by another object while the entry exists."""
