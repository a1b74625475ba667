"""Fabricated journals for the observe tests: workflows whose steps record what the agents
layer records for model and tool calls (meta keys from tether.observe.names, usage)."""

from __future__ import annotations

from typing import Any

import tether
from tether.observe import names as n
from tether.observe.cost import price_call


def model_call(
    node: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    *,
    prompt_hash: str = "p1",
    provider: str = "openai",
) -> dict[str, Any]:
    """Inside a running step: record one model call as the agents layer does."""
    price = price_call(model, provider=provider, input_tokens=input_tokens,
                       output_tokens=output_tokens)
    step = tether.current_step()
    step.set_meta(**{
        n.OPERATION_NAME: n.OP_CHAT,
        n.NODE: node,
        n.AGENT_NAME: node,
        n.PROVIDER_NAME: provider,
        n.REQUEST_MODEL: model,
        n.RESPONSE_MODEL: model,
        n.INPUT_TOKENS: input_tokens,
        n.OUTPUT_TOKENS: output_tokens,
        n.PRICE_SOURCE: price.source,
        n.PROMPT_HASH: prompt_hash,
        **({n.COST_USD: price.cost_usd} if price.cost_usd is not None else {}),
    })
    step.add_usage(tether.Usage(
        llm_calls=1,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=price.cost_usd or 0.0,
        unpriced_calls=0 if price.priced else 1,
    ))
    return {"text": f"{node} answer"}


def tool_call(node: str, tool: str) -> str:
    step = tether.current_step()
    step.set_meta(**{n.OPERATION_NAME: n.OP_TOOL, n.NODE: node, n.AGENT_NAME: node,
                     n.TOOL_NAME: tool, n.RISK: "read"})
    step.add_usage(tether.Usage(tool_calls=1))
    return f"{tool} result"
