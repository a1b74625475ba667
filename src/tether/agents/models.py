"""Model access for agents: resolving names, one model request as one step, provider faults.

No provider adapter is written here: models are pydantic-ai `Model`s (``"openai:gpt-4.1-mini"``,
`FunctionModel`, `TestModel`, tether's `ScriptedModel`…) called through `Model.request`. This
module turns one request into one journaled step's work: send, price, record usage and the
fingerprint, and map provider failures onto the step's retry policy.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelHTTPError,
    ModelQuotaExceededError,
    ModelRequestRejectedError,
    UnexpectedModelBehavior,
)
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters, infer_model
from pydantic_ai.settings import ModelSettings

from tether.engine.budget import Usage
from tether.engine.context import current_step
from tether.engine.retry import Retry
from tether.errors import UserError
from tether.observe import names
from tether.observe.cost import price_model_call

DEFAULT_RESERVED_OUTPUT_TOKENS = 4096
"""Completion tokens a model call is assumed to use at most when its worst case is reserved
against budgets and spend limits and its request sets no ``max_tokens`` (`Agent`
``reserve_output_tokens`` changes it per agent)."""

DEFAULT_MODEL_RETRY = Retry(max_attempts=4, initial_delay=0.5, max_delay=20.0)
"""Model steps retry timeouts, connection errors, 429s (after Retry-After) and 5xx."""


class ProviderError(Exception):
    """A model provider failed a request. `retryable` tells the step's retry policy whether
    another attempt may succeed; `retry_after` is the provider's requested wait in seconds."""

    def __init__(
        self, message: str, *, retryable: bool, retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


def resolve_model(model: Model | str) -> Model:
    """A pydantic-ai `Model` for a model object or a ``provider:model`` name."""
    if isinstance(model, Model):
        return model
    try:
        return infer_model(model)
    except Exception as exc:
        raise UserError(
            f"cannot use model {model!r}: {exc}. Give a pydantic-ai model name like "
            "'openai:gpt-4.1-mini' (with the provider's API key in the environment) or a Model "
            "object"
        ) from exc


def model_label(model: Model | str) -> str:
    """``provider:name`` of a model, without instantiating a provider client for names."""
    if isinstance(model, str):
        return model
    return f"{model.system}:{model.model_name}"


def short_hash(value: Any) -> str:
    """A stable 12-hex-digit fingerprint of a JSON value."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def estimate_tokens(messages: list[ModelMessage]) -> int:
    """A cheap upper-ish estimate of the prompt's tokens (about four characters per token)."""
    return max(1, len(ModelMessagesTypeAdapter.dump_json(messages)) // 4)


def classify_failure(exc: BaseException, *, node: str, model: str) -> BaseException:
    """Map a provider failure onto the retry policy: transient faults stay retryable, requests
    the provider rejects fail at once with its message."""
    if isinstance(exc, ModelHTTPError):
        status = exc.status_code
        where = f"node {node!r}: model {model} answered HTTP {status}"
        if status == 429 or status == 408 or status >= 500:
            return ProviderError(f"{where} (will retry): {exc.body or exc}", retryable=True,
                                 retry_after=exc.retry_after, status=status)
        return ProviderError(
            f"{where}: {exc.body or exc}; the provider rejected the request, retrying would not "
            "help — fix the request (model name, API key, parameters)",
            retryable=False,
            status=status,
        )
    if isinstance(exc, ModelRequestRejectedError | ModelQuotaExceededError):
        return ProviderError(f"node {node!r}: model {model} rejected the request: {exc}",
                             retryable=False)
    if isinstance(exc, ModelAPIError):
        return ProviderError(f"node {node!r}: model {model} failed: {exc}", retryable=True,
                             retry_after=exc.retry_after)
    if isinstance(exc, UnexpectedModelBehavior):
        return ProviderError(f"node {node!r}: model {model} sent a malformed response: {exc}",
                             retryable=True)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | ConnectionError | OSError):
        return ProviderError(f"node {node!r}: model {model} unreachable: {exc!r}", retryable=True)
    module = type(exc).__module__
    if module.startswith(("httpx", "openai", "httpcore")):
        # Transport-level failures of the provider SDKs (connection reset, read timeout, a body
        # that is not JSON) are transient by nature.
        return ProviderError(f"node {node!r}: model {model} failed: {type(exc).__name__}: {exc}",
                             retryable=True)
    return exc


async def request_model(
    model: Model,
    messages: list[ModelMessage],
    settings: ModelSettings | None,
    params: ModelRequestParameters,
    *,
    node: str,
    agent: str,
    prompt_hash: str,
    tools_hash: str,
    app_version: str | None,
    app: Any = None,
) -> dict[str, Any]:
    """The body of one model step: send, price, record usage and fingerprint. Returns the
    response as JSON (the journaled value)."""
    label = model_label(model)
    try:
        response = await model.request(messages, settings, params)
    except Exception as exc:
        mapped = classify_failure(exc, node=node, model=label)
        if mapped is exc:
            raise
        raise mapped from exc
    usage = response.usage
    input_tokens, output_tokens = int(usage.input_tokens or 0), int(usage.output_tokens or 0)
    response_model = response.model_name or model.model_name
    # Priced now, with the App's own overrides (negotiated rates, self-hosted models).
    price = price_model_call(app, response_model, provider=model.system,
                             input_tokens=input_tokens, output_tokens=output_tokens)
    step = current_step()
    step.add_usage(Usage(
        llm_calls=1,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=price.cost_usd or 0.0,
        unpriced_calls=0 if price.priced else 1,
    ))
    step.set_meta(**{
        names.OPERATION_NAME: names.OP_CHAT,
        names.REQUEST_MODEL: model.model_name,
        names.RESPONSE_MODEL: response_model,
        names.PROVIDER_NAME: model.system,
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
    return dump_response(response)


def dump_response(response: ModelResponse) -> dict[str, Any]:
    data: list[dict[str, Any]] = ModelMessagesTypeAdapter.dump_python([response], mode="json")
    return data[0]


def load_response(data: dict[str, Any]) -> ModelResponse:
    message = ModelMessagesTypeAdapter.validate_python([data])[0]
    assert isinstance(message, ModelResponse)
    return message
