"""Pipelines of narrow nodes: `Sequential`, `Parallel`, `Loop`, and the degrading wrappers
`Optional` and `Fallback`.

Every node (an `Agent` or a pipeline) has a name and runs against the run's `RunState`: it sees
the input and the outputs of the nodes before it, and its own output is kept under its name.
`app.register(pipeline)` makes the pipeline a workflow of the same name whose output is the
outputs of its nodes, by name.

A node's failure is isolated by wrapping it:

1. `Optional(node, default=…)`: when the node fails for good (its model retries and re-asks
   spent, a tool failing past its retries, the loop guard) or its scope refuses the request,
   the pipeline goes on with `default` as the node's output.
2. `Fallback(primary, backup)`: the backup runs only when the primary fails.

Either way the decision is journaled as its own step (``{node}.skipped`` /
``{node}.fallback``), after the failed node's own entries. A resumed run replays the failure
from the journal, reaches the same decision without re-running anything, and carries on where
it stopped. What a wrapper never absorbs: a run budget or spend limit, a non-determinism error,
a trust-policy failure (whatever the context marks fatal), a cancel, a lost lease.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tether.agents.agent import Agent, _remember_tools  # pyright: ignore[reportPrivateUsage]
from tether.agents.errors import AgentFailed
from tether.agents.state import RunState
from tether.engine.context import Context
from tether.engine.control import RefuseRun
from tether.engine.records import DEGRADED
from tether.engine.registry import WorkflowDef
from tether.errors import BudgetExceeded, RunFailed, StepFailed, UserError
from tether.observe import names


class Node(Protocol):
    """What a pipeline can hold: an `Agent` or another pipeline."""

    name: str

    async def execute(self, ctx: Context, state: RunState) -> Any: ...

    def nodes(self) -> list[Agent]: ...


class _Pipeline:
    name: str
    children: list[Node]
    version: str

    def __init__(self, name: str, nodes: Sequence[Node], version: str) -> None:
        if not nodes:
            raise UserError(f"pipeline {name!r} needs at least one node")
        self.name = name
        self.children = list(nodes)
        self.version = version
        seen: set[str] = set()
        for agent in self.nodes():
            if agent.name in seen:
                raise UserError(
                    f"pipeline {name!r}: two nodes are named {agent.name!r}; node names key the "
                    "run state and the journal, so give each node its own name"
                )
            seen.add(agent.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {[c.name for c in self.children]})"

    def nodes(self) -> list[Agent]:
        """Every agent in the pipeline, depth first."""
        return [agent for child in self.children for agent in child.nodes()]

    def register_on(self, app: Any) -> None:
        """Register the pipeline as a workflow named after it (`App.register` calls this)."""
        _remember_tools(app, self.nodes())

        async def workflow(ctx: Context, **input: Any) -> Any:
            return await self.execute(ctx, RunState(input=dict(input)))

        app.add_workflow(WorkflowDef(name=self.name, version=self.version, fn=workflow))

    async def execute(self, ctx: Context, state: RunState) -> Any:
        raise NotImplementedError

    async def _run_child(self, child: Node, ctx: Context, state: RunState) -> Any:
        try:
            output = await child.execute(ctx, state)
        except RunFailed:
            raise  # already names its node (or is a budget/determinism failure of the run)
        except StepFailed as exc:
            raise AgentFailed(
                f"run {ctx.run_id}: node {child.name!r} failed: {exc}",
                node=child.name, run_id=ctx.run_id, error_type=exc.error_type,
                details={"step": exc.step, "seq": exc.seq},
            ) from exc
        state.outputs[child.name] = output
        return output


class Sequential(_Pipeline):
    """Nodes one after the other; each sees the outputs of those before it."""

    def __init__(self, name: str, nodes: Sequence[Node], *, version: str = "1") -> None:
        super().__init__(name, nodes, version)

    async def execute(self, ctx: Context, state: RunState) -> dict[str, Any]:
        return {child.name: await self._run_child(child, ctx, state) for child in self.children}


class Parallel(_Pipeline):
    """Branches run concurrently; each sees the state as it was when the group started."""

    def __init__(self, name: str, nodes: Sequence[Node], *, version: str = "1") -> None:
        super().__init__(name, nodes, version)
        if any(_contains_parallel(child) for child in self.children):
            raise UserError(
                f"Parallel {name!r} contains another Parallel; branches do not nest — list "
                "all the concurrent nodes in one Parallel"
            )

    async def execute(self, ctx: Context, state: RunState) -> dict[str, Any]:
        # Each branch works on its own copy, so what a branch sees never depends on how fast
        # the others were; their outputs are merged when all are done.
        views = [RunState(input=state.input, outputs=dict(state.outputs),
                          checks=list(state.checks)) for _ in self.children]

        def branch(child: Node, view: RunState) -> Callable[[], Any]:
            return lambda: self._run_child(child, ctx, view)

        outputs = await ctx.branches(
            [branch(child, view) for child, view in zip(self.children, views, strict=True)])
        for view in views:
            state.outputs.update(view.outputs)
            state.checks.extend(c for c in view.checks if c not in state.checks)
        return {child.name: out for child, out in zip(self.children, outputs, strict=True)}


class ChildWorkflow:
    """A node that runs another workflow as a child run (`Context.run_child`): executed by
    any worker that has that workflow, journaled, started once however often this run
    resumes. As a `Parallel` branch it puts that branch on another worker. `input` builds the
    child's input from the state (default: this run's input); the child's output is the
    node's output."""

    def __init__(
        self,
        name: str,
        workflow: str,
        input: Callable[[RunState], dict[str, Any]] | None = None,
    ) -> None:
        self.name = name
        self.workflow = workflow
        self.input = input

    def __repr__(self) -> str:
        return f"ChildWorkflow({self.name!r}, {self.workflow!r})"

    def nodes(self) -> list[Agent]:
        return []  # its agents live in the child's own workflow

    async def execute(self, ctx: Context, state: RunState) -> Any:
        data = self.input(state) if self.input is not None else dict(state.input)
        return await ctx.run_child(self.workflow, data)


class Loop(_Pipeline):
    """Run the body (one node, or several in sequence) until `until(state)` holds, at most
    `max_iterations` times. Each iteration's outputs replace the previous ones; the loop's own
    output records how many iterations ran and the last outputs."""

    def __init__(
        self,
        name: str,
        body: Node | Sequence[Node],
        *,
        max_iterations: int,
        until: Callable[[RunState], bool] | None = None,
        version: str = "1",
    ) -> None:
        nodes = [body] if not isinstance(body, Sequence) else list(body)
        super().__init__(name, nodes, version)
        if max_iterations < 1:
            raise UserError(f"Loop {name!r}: max_iterations must be at least 1")
        self.max_iterations = max_iterations
        self.until = until

    async def execute(self, ctx: Context, state: RunState) -> dict[str, Any]:
        iterations = 0
        last: dict[str, Any] = {}
        for _ in range(self.max_iterations):
            iterations += 1
            state.outputs[f"{self.name}_iteration"] = iterations
            for child in self.children:
                last[child.name] = await self._run_child(child, ctx, state)
            if self.until is not None and self.until(state):
                break
        return {"iterations": iterations, "outputs": last}


class Optional:
    """A node the pipeline can do without: when it fails or is refused, its output is
    `default` and the run goes on (and ends ``succeeded``, marked degraded)."""

    def __init__(self, node: Node, *, default: Any = None) -> None:
        self.node = node
        self.name = node.name
        self.default = default

    def __repr__(self) -> str:
        return f"Optional({self.node!r})"

    def nodes(self) -> list[Agent]:
        return self.node.nodes()

    async def execute(self, ctx: Context, state: RunState) -> Any:
        failure = await _attempt(self.node, ctx, state)
        if isinstance(failure, _Succeeded):
            return failure.output
        await _record_degradation(ctx, self.node.name, "skipped", failure, {"default": self.default})
        return self.default


class Fallback:
    """Run `primary`; only if it fails (or is refused) run `backup` in its place. The pair's
    output is kept under the primary's name (or `name`)."""

    def __init__(self, primary: Node, backup: Node, *, name: str | None = None) -> None:
        self.primary = primary
        self.backup = backup
        self.name = name or primary.name

    def __repr__(self) -> str:
        return f"Fallback({self.primary!r}, {self.backup!r})"

    def nodes(self) -> list[Agent]:
        return [*self.primary.nodes(), *self.backup.nodes()]

    async def execute(self, ctx: Context, state: RunState) -> Any:
        outcome = await _attempt(self.primary, ctx, state)
        if isinstance(outcome, _Succeeded):
            return outcome.output
        await _record_degradation(ctx, self.primary.name, "fallback", outcome,
                                  {"backup": self.backup.name})
        output = await _run_node(self.backup, ctx, state)
        state.outputs[self.backup.name] = output
        return output


class _Succeeded:
    __slots__ = ("output",)

    def __init__(self, output: Any) -> None:
        self.output = output


async def _run_node(node: Node, ctx: Context, state: RunState) -> Any:
    try:
        return await node.execute(ctx, state)
    except StepFailed as exc:
        raise AgentFailed(
            f"run {ctx.run_id}: node {node.name!r} failed: {exc}",
            node=node.name, run_id=ctx.run_id, error_type=exc.error_type,
            details={"step": exc.step, "seq": exc.seq},
        ) from exc


async def _attempt(node: Node, ctx: Context, state: RunState) -> _Succeeded | dict[str, Any]:
    """Run `node`; its output, or a description of a failure a wrapper may absorb. Anything
    that must end the run (see the module docstring) propagates."""
    try:
        return _Succeeded(await _run_node(node, ctx, state))
    except RefuseRun as refusal:
        return {"type": "RunRefused", "message": refusal.reason, "refused": True}
    except BudgetExceeded:
        raise
    except RunFailed as exc:
        if ctx.fatal is not None:
            raise
        return {"type": exc.error_type, "message": str(exc)}


async def _record_degradation(
    ctx: Context, node: str, how: str, failure: dict[str, Any], extra: dict[str, Any]
) -> None:
    record = {"node": node, "how": how, "error": failure, **extra}

    async def decide() -> dict[str, Any]:
        return record

    await ctx.run_step(
        f"{node}.{how}",
        decide,
        is_async=True,
        meta={names.NODE: node, DEGRADED: how},
        record_input={"node": node, "error": failure},
    )


def _contains_parallel(node: Any) -> bool:
    if isinstance(node, Parallel):
        return True
    if isinstance(node, Optional):
        return _contains_parallel(node.node)
    if isinstance(node, Fallback):
        return _contains_parallel(node.primary) or _contains_parallel(node.backup)
    return isinstance(node, _Pipeline) and any(_contains_parallel(c) for c in node.children)
