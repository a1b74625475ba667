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

from tether.agents.guards import emit_text_delta, estimate_tokens, record_model_call, text_delta
from tether.engine.context import current_step
from tether.engine.ratelimits import RATE_WAIT, Capacity, acquire_capacity
from tether.engine.retry import Retry
from tether.errors import UserError

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


async def wait_for_rate_limits(
    app: Any, label: str, messages: list[ModelMessage]
) -> Capacity | None:
    """Before a model request is sent: wait for capacity under the app's rate limits for
    `label` (`tether.engine.ratelimits`), and note the wait in the step's meta. Settle what
    it returns once the request was answered."""
    if not getattr(app, "rate_limits", None):
        return None
    capacity = await acquire_capacity(app, label, tokens=estimate_tokens(messages))
    if capacity.waited > 0:
        current_step().set_meta(**{RATE_WAIT: round(capacity.waited, 3)})
    return capacity


async def settle_rate_limits(app: Any, capacity: Capacity | None) -> None:
    if capacity is not None:
        await capacity.settle(app)


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
    stream: bool = False,
) -> dict[str, Any]:
    """The body of one model step: send, price, record usage and fingerprint. Returns the
    response as JSON (the journaled value). With `stream`, the request is streamed and its text
    goes to the run's event stream as it arrives."""
    label = model_label(model)
    capacity = await wait_for_rate_limits(app, label, messages)
    try:
        if stream:
            response = await _streamed(model, messages, settings, params, app=app, agent=agent)
        else:
            response = await model.request(messages, settings, params)
    except Exception as exc:
        mapped = classify_failure(exc, node=node, model=label)
        if mapped is exc:
            raise
        raise mapped from exc
    finally:
        await settle_rate_limits(app, capacity)
    usage = response.usage
    record_model_call(
        current_step(), app=app, provider=model.system, request_model=model.model_name,
        response_model=response.model_name, input_tokens=int(usage.input_tokens or 0),
        output_tokens=int(usage.output_tokens or 0), agent=agent, node=node,
        prompt_hash=prompt_hash, tools_hash=tools_hash, app_version=app_version,
    )
    return dump_response(response)


async def _streamed(
    model: Model, messages: list[ModelMessage], settings: ModelSettings | None,
    params: ModelRequestParameters, *, app: Any, agent: str,
) -> ModelResponse:
    step = current_step()
    async with model.request_stream(messages, settings, params) as streamed:
        async for event in streamed:
            delta = text_delta(event)
            if delta:
                emit_text_delta(app, step, agent, delta)
    return streamed.get()


def dump_response(response: ModelResponse) -> dict[str, Any]:
    data: list[dict[str, Any]] = ModelMessagesTypeAdapter.dump_python([response], mode="json")
    return data[0]


def load_response(data: dict[str, Any]) -> ModelResponse:
    message = ModelMessagesTypeAdapter.validate_python([data])[0]
    assert isinstance(message, ModelResponse)
    return message
