"""The guards every agent on tether shares: one implementation for `tether.Agent` and for a
pydantic-ai agent with `TetherDurability` and tether's capabilities.

* `precheck_model_call` — before a model request is sent: its worst case (prompt estimate,
  completion bounded by ``max_tokens`` or a ceiling, priced like the recorded call) and the
  run, node and label-window limits it is reserved against;
* `record_model_call` — inside the model step, after the response: usage priced at record
  time, and the fingerprint (requested/responded model, prompt and tool-schema hashes);
* `LoopGuard` — the same tool with the same arguments asked for too often;
* `record_scope_violation` — a tool the agent does not own, refused and journaled;
* `text_delta` / `emit_text_delta` — a streamed model's text, live on the run's events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic_ai.messages import (
    AgentStreamEvent,
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelResponseStreamEvent,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
)

from tether.engine.budget import ZERO, Budget, Usage
from tether.engine.context import StepContext
from tether.errors import BudgetExceeded
from tether.observe import names
from tether.observe.cost import price_model_call
from tether.observe.limits import spend_windows
from tether.store.base import SpendWindow

if TYPE_CHECKING:
    from tether.engine.context import Context


DEFAULT_RESERVED_OUTPUT_TOKENS = 4096
"""Completion tokens a model call is assumed to use at most when its worst case is reserved
against budgets and spend limits and its request sets no ``max_tokens`` (`Agent`
``reserve_output_tokens`` changes it per agent)."""


_UNBOUNDED_CALL = Usage(llm_calls=1)


def estimate_tokens(messages: list[ModelMessage]) -> int:
    """A cheap upper-ish estimate of the prompt's tokens (about four characters per token, a
    token per character outside ASCII, plus a few per part for the framing), without
    serialising the conversation."""
    chars = 0
    for message in messages:
        instructions = getattr(message, "instructions", None)
        if instructions:
            chars += _weight(instructions)
        for part in message.parts:
            chars += 16
            content = getattr(part, "content", None)
            if isinstance(content, str):
                chars += _weight(content)
            elif content is not None:
                chars += len(ModelMessagesTypeAdapter.dump_json([message]))
                break
            args = getattr(part, "args", None)
            if args is not None:
                chars += _weight(args if isinstance(args, str) else str(args))
    return max(1, chars // 4)


def _weight(text: str) -> int:
    """`text`'s length in estimate units, four to a token. Tokenizers give CJK, emoji and most
    non-Latin scripts about a token per character, so a character outside ASCII weighs four:
    counted as a quarter token, a prompt in those scripts would be under-reserved up to four
    times, and budgets and spend limits passed by that much."""
    if text.isascii():
        return len(text)
    return len(text) + 3 * (len(text) - len(text.encode("ascii", "ignore")))


def node_usage(ctx: Context, node: str) -> Usage:
    """What the journal has charged to one agent (pipeline node) so far."""
    return ctx.usage_where(lambda meta: meta.get(names.NODE) == node)


async def precheck_model_call(
    ctx: Context,
    messages: list[ModelMessage],
    *,
    node: str,
    node_budget: Budget | None,
    model_name: str,
    provider: str | None,
    max_tokens: int | None = None,
    extra_prompt_tokens: int = 0,
    reserve_output_tokens: int = DEFAULT_RESERVED_OUTPUT_TOKENS,
) -> tuple[Usage, tuple[tuple[Budget, Usage, str], ...], tuple[SpendWindow, ...]]:
    """What `Context.run_step` needs to reserve a model request's worst case before it is
    sent: ``(estimate, node budgets, spend windows)``. The run's budget, these node budgets
    and the label spend windows are all reserved against the estimate (the windows in the
    store, atomically across workers). A replayed request (its step is in the journal) sends
    nothing, so it is neither estimated nor reserved."""
    budgets: tuple[tuple[Budget, Usage, str], ...] = ()
    if node_budget is not None:
        budgets = ((node_budget, node_usage(ctx, node), f"agent {node}"),)
    recorded = ctx.journal.get(ctx.next_sequence())
    if recorded is not None and recorded.status == "completed":
        return ZERO, budgets, ()
    windows = spend_windows(ctx.app, ctx.labels)
    if node_budget is None and ctx.budget is None and not windows:
        # Nothing to reserve against: the estimate would not be read, so the conversation is
        # not walked to make one (the common case of a run without limits).
        return _UNBOUNDED_CALL, (), ()
    prompt = estimate_tokens(messages) + extra_prompt_tokens
    completion = int(max_tokens) if max_tokens else reserve_output_tokens
    caps = [f"{scope} budget max_cost_usd={b.max_cost_usd:g}" for b, scope in (
        (node_budget, f"agent {node}"), (ctx.budget, "run"))
        if b is not None and b.max_cost_usd is not None]
    caps += [f"spend limit {w.description}" for w in windows]
    if not caps and ctx.budget is None:
        return Usage(llm_calls=1, input_tokens=prompt, output_tokens=completion), budgets, windows
    price = price_model_call(ctx.app, model_name, provider=provider,
                             input_tokens=prompt, output_tokens=completion)
    if not caps:
        # Priced all the same, when known: the run budget's hold of this worst case in the
        # store is what `tether show` and the cost report give for the call if a crash cuts it.
        priced = price.cost_usd is not None
        return Usage(llm_calls=1, input_tokens=prompt, output_tokens=completion,
                     cost_usd=price.cost_usd or 0.0, unpriced_calls=0 if priced else 1
                     ), budgets, windows
    if price.cost_usd is None:
        # Counting an unpriced call as $0 would let it through every dollar cap unseen.
        label = f"{provider}:{model_name}" if provider else model_name
        error = BudgetExceeded(
            f"run {ctx.run_id}: node {node!r}: model {label} has no known price, so "
            f"the dollar limit ({'; '.join(caps)}) cannot be enforced before the call; "
            "price it with tether.observe.set_price_overrides(app, ...) or "
            "$TETHER_PRICE_OVERRIDES, or remove the dollar limit",
            run_id=ctx.run_id, limit="unpriced_model",
            details={"limit": "unpriced_model", "model": label, "dollar_limits": caps,
                     "reason": price.reason},
        )
        ctx.fatal = error
        raise error
    estimate = Usage(llm_calls=1, input_tokens=prompt, output_tokens=completion,
                     cost_usd=price.cost_usd)
    return estimate, budgets, windows


def record_model_call(
    step: StepContext,
    *,
    app: Any,
    provider: str | None,
    request_model: str,
    response_model: str | None,
    input_tokens: int,
    output_tokens: int,
    agent: str,
    node: str,
    prompt_hash: str | None,
    tools_hash: str | None,
    app_version: str | None,
) -> None:
    """Price one model response now (with the App's overrides) and charge it, with its
    fingerprint, to the running step."""
    responded = response_model or request_model
    price = price_model_call(app, responded, provider=provider,
                             input_tokens=input_tokens, output_tokens=output_tokens)
    step.add_usage(Usage(
        llm_calls=1,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=price.cost_usd or 0.0,
        unpriced_calls=0 if price.priced else 1,
    ))
    step.set_meta(**{
        names.OPERATION_NAME: names.OP_CHAT,
        names.REQUEST_MODEL: request_model,
        names.RESPONSE_MODEL: responded,
        names.PROVIDER_NAME: provider,
        names.AGENT_NAME: agent,
        names.NODE: node,
        names.INPUT_TOKENS: input_tokens,
        names.OUTPUT_TOKENS: output_tokens,
        names.COST_USD: price.cost_usd,
        names.PRICE_SOURCE: price.source,
        names.PROMPT_HASH: prompt_hash,
        names.TOOLS_HASH: tools_hash,
        names.APP_VERSION: app_version,
    })
    if not price.priced:
        step.set_meta(**{names.UNPRICED: True})


@dataclass
class LoopGuard:
    """Counts identical tool calls (same tool, same arguments) in one agent execution."""

    limit: int
    """The call that reaches this count is stopped (the tool runs at most ``limit - 1`` times)."""
    seen: dict[str, int] = field(default_factory=dict[str, int])

    def count(self, tool: str, args: Any) -> int:
        """Count one more request for ``tool(args)`` and return how many there were."""
        key = f"{tool}:{json.dumps(args, sort_keys=True, default=str)}"
        self.seen[key] = self.seen.get(key, 0) + 1
        return self.seen[key]

    def tripped(self, tool: str, args: Any) -> int | None:
        """Count the call; the repeat count when it reaches the limit, else ``None``."""
        repeats = self.count(tool, args)
        return repeats if repeats >= self.limit else None


async def record_scope_violation(
    ctx: Context, *, agent: str, tool: str, args: Any, owner: str | None
) -> None:
    """Journal a refused call of a tool the agent does not own (one step, replayed as such)."""
    record = {"agent": agent, "tool": tool, "owner": owner, "refused": True}

    async def refuse() -> dict[str, Any]:
        return record

    await ctx.run_step(
        f"{agent}.scope_violation",
        refuse,
        is_async=True,
        meta={names.NODE: agent, names.AGENT_NAME: agent,
              names.TOOL_NAME: tool, "tether.scope.violation": True},
        record_input={"tool": tool, "args": args},
    )


def text_delta(event: AgentStreamEvent | ModelResponseStreamEvent) -> str | None:
    """The text a streamed model event adds, if any (what the run's event stream shows live)."""
    if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
        return event.delta.content_delta
    if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
        return event.part.content
    return None


def emit_text_delta(app: Any, step: StepContext, agent: str, delta: str) -> None:
    """Put a model's text delta on the run's event stream (a live-only event)."""
    log = getattr(app, "run_events", None)
    if log is not None and delta:
        log.emit(step.run_id, "model_text_delta", seq=step.seq,
                 data={"delta": delta, "agent": agent})

