"""Pricing model calls with genai-prices, when they are recorded.

Every priced call stores the usage and the price-data version, so spend can be recomputed when
prices change. A model genai-prices does not know is *unpriced*: it is reported as such and
never counted as zero. Overrides (your negotiated rates, a self-hosted model) take precedence.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import genai_prices

from tether.errors import UserError

PRICE_DATA_VERSION = f"genai-prices {genai_prices.__version__}"


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """USD per million tokens for a model, used instead of genai-prices."""

    input_per_mtok: float
    output_per_mtok: float
    cache_read_per_mtok: float | None = None


@dataclass(frozen=True, slots=True)
class Price:
    """The price of one model call."""

    cost_usd: float | None
    """``None`` when the call is unpriced (never silently 0)."""
    source: str
    """``genai-prices <version>``, ``override``, or ``unpriced``."""
    reason: str | None = None
    """Why the call is unpriced."""

    @property
    def priced(self) -> bool:
        return self.cost_usd is not None


def split_model_name(model: str, provider: str | None = None) -> tuple[str | None, str]:
    """``openai:gpt-4.1-mini`` -> ``("openai", "gpt-4.1-mini")``."""
    if ":" in model and provider is None:
        head, tail = model.split(":", 1)
        return head, tail
    return provider, model


def price_call(
    model: str,
    *,
    provider: str | None = None,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    overrides: dict[str, PriceOverride] | None = None,
) -> Price:
    """Price one call. `model` may carry its provider (``openai:gpt-4.1-mini``).

    Without `overrides`, those of ``$TETHER_PRICE_OVERRIDES`` apply; pass
    ``price_overrides(app)`` to add an App's own (see `set_price_overrides`)."""
    provider, name = split_model_name(model, provider)
    if overrides is None and os.environ.get(OVERRIDES_ENV):
        overrides = price_overrides()
    override = None
    if overrides:
        override = overrides.get(model) or overrides.get(name)
    if override is not None:
        cache_rate = override.cache_read_per_mtok
        uncached = input_tokens - (cache_read_tokens if cache_rate is not None else 0)
        cost = (
            uncached * override.input_per_mtok
            + output_tokens * override.output_per_mtok
            + (cache_read_tokens * cache_rate if cache_rate is not None else 0)
        ) / 1_000_000
        return Price(cost_usd=cost, source="override")
    if not cache_read_tokens and not cache_write_tokens:
        rates = _linear_rates(provider, name)
        if rates is not None:
            base, per_input, per_output = rates
            total = (
                base + per_input * input_tokens / _MILLION + per_output * output_tokens / _MILLION
            )
            return Price(cost_usd=float(total), source=PRICE_DATA_VERSION)
    usage = genai_prices.Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens or None,
        cache_write_tokens=cache_write_tokens or None,
    )
    try:
        calc = genai_prices.calc_price(usage, model_ref=name, provider_id=provider)
    except LookupError as exc:
        return Price(cost_usd=None, source="unpriced", reason=str(exc))
    total = calc.total_price
    return Price(
        cost_usd=float(total if isinstance(total, Decimal) else Decimal(str(total))),
        source=PRICE_DATA_VERSION,
    )


_MILLION = Decimal(1_000_000)
_SAMPLES = ((123_457, 6_791), (1, 1), (2_000_003, 999_999))
_linear: dict[tuple[str | None, str], tuple[Decimal, Decimal, Decimal] | None] = {}
_linear_data: list[object] = [None]


def _linear_rates(provider: str | None, name: str) -> tuple[Decimal, Decimal, Decimal] | None:
    """``(per call, per million input tokens, per million output tokens)`` of a model whose
    genai-prices price is one flat set of rates (no tiers, no dated prices), so a call of only
    input and output tokens costs exactly ``base + rates x tokens``; ``None`` for any other
    model (or an unknown one), which genai-prices prices call by call.

    genai-prices' own calculation walks its unit registry for every call (~0.1 ms, the largest
    part of recording a model call); the rates are derived from it once per model and price
    data, and checked against it at sample points, so the result is the same Decimal."""
    try:
        from genai_prices.data_snapshot import get_snapshot
        from genai_prices.types import ModelPrice, TieredPrices

        data = get_snapshot()
    except Exception:  # these are genai-prices' internals: if they move, price call by call
        return None
    if _linear_data[0] is not data:  # new price data (genai-prices can update itself)
        _linear.clear()
        _linear_data[0] = data
    key = (provider, name)
    if key in _linear:
        return _linear[key]
    rates: tuple[Decimal, Decimal, Decimal] | None = None
    try:
        _, info = data.find_provider_model(name, None, provider, None)
        prices: Any = info.prices
        if isinstance(prices, ModelPrice) and not any(
            isinstance(v, TieredPrices) for v in vars(prices).values()
        ):

            def total(inputs: int, outputs: int) -> Decimal:
                calc = genai_prices.calc_price(
                    genai_prices.Usage(input_tokens=inputs, output_tokens=outputs),
                    model_ref=name,
                    provider_id=provider,
                )
                value = calc.total_price
                return value if isinstance(value, Decimal) else Decimal(str(value))

            base = total(0, 0)
            found = (base, total(1_000_000, 0) - base, total(0, 1_000_000) - base)
            if all(
                found[0] + found[1] * i / _MILLION + found[2] * o / _MILLION == total(i, o)
                for i, o in _SAMPLES
            ):
                rates = found
    except Exception:  # an unknown model (LookupError), or genai-prices' internals moved
        rates = None
    if len(_linear) < 1024:
        _linear[key] = rates
    return rates


# --- configuration: price overrides -------------------------------------------------------------

OVERRIDES_ENV = "TETHER_PRICE_OVERRIDES"
"""JSON ``{"model": {"input_per_mtok": 0.1, "output_per_mtok": 0.4}, …}``."""
_OVERRIDES_KEY = "tether.observe.price_overrides"


def _as_override(model: str, value: PriceOverride | dict[str, Any]) -> PriceOverride:
    if isinstance(value, PriceOverride):
        return value
    try:
        return PriceOverride(
            input_per_mtok=float(value["input_per_mtok"]),
            output_per_mtok=float(value["output_per_mtok"]),
            cache_read_per_mtok=(
                float(value["cache_read_per_mtok"])
                if value.get("cache_read_per_mtok") is not None
                else None
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(
            f"price override for {model!r} must give input_per_mtok and output_per_mtok "
            f"(USD per million tokens), got {value!r}"
        ) from exc


def borrowed_rates(model: str) -> PriceOverride:
    """The genai-prices rates of `model` (``provider:model``) as an override, to price a model
    that has no price of its own (an offline or self-hosted one) as if it were that model."""
    provider, name = split_model_name(model)
    million = 1_000_000
    try:
        per_input = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=million), model_ref=name, provider_id=provider
        ).total_price
        per_output = genai_prices.calc_price(
            genai_prices.Usage(output_tokens=million), model_ref=name, provider_id=provider
        ).total_price
    except LookupError as exc:
        raise UserError(f"cannot borrow the prices of {model!r}: {exc}") from exc
    return PriceOverride(input_per_mtok=float(per_input), output_per_mtok=float(per_output))


def set_price_overrides(app: Any, overrides: dict[str, PriceOverride | dict[str, Any]]) -> None:
    """Price these models (by ``provider:model`` or bare model name) at your own rates on this
    App; they win over genai-prices and over ``$TETHER_PRICE_OVERRIDES``."""
    app.extensions[_OVERRIDES_KEY] = {m: _as_override(m, v) for m, v in overrides.items()}


def price_overrides(app: Any = None) -> dict[str, PriceOverride]:
    """The overrides in force: ``$TETHER_PRICE_OVERRIDES``, then the App's own on top."""
    merged: dict[str, PriceOverride] = {}
    text = os.environ.get(OVERRIDES_ENV)
    if text:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"${OVERRIDES_ENV} is not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise UserError(f"${OVERRIDES_ENV} must be a JSON object of model -> rates")
        for model, value in cast(dict[str, Any], data).items():
            merged[model] = _as_override(model, value)
    if app is not None:
        merged.update(app.extensions.get(_OVERRIDES_KEY) or {})
    return merged


def price_model_call(
    app: Any,
    model: str,
    *,
    provider: str | None = None,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> Price:
    """`price_call` with the App's configured overrides (what the agents layer calls)."""
    return price_call(
        model,
        provider=provider,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        overrides=price_overrides(app) or None,
    )


def reprice(meta: dict[str, Any], overrides: dict[str, PriceOverride] | None = None) -> Price:
    """Price a recorded model call again from its journaled usage (e.g. after a price-data
    update, or to check a stored cost)."""
    from tether.observe import names as n

    model = meta.get(n.RESPONSE_MODEL) or meta.get(n.REQUEST_MODEL)
    if not model:
        return Price(cost_usd=None, source="unpriced", reason="the step records no model")
    return price_call(
        str(model),
        provider=meta.get(n.PROVIDER_NAME),
        input_tokens=int(meta.get(n.INPUT_TOKENS) or 0),
        output_tokens=int(meta.get(n.OUTPUT_TOKENS) or 0),
        cache_read_tokens=int(meta.get(n.CACHE_READ_TOKENS) or 0),
        cache_write_tokens=int(meta.get(n.CACHE_WRITE_TOKENS) or 0),
        overrides=overrides,
    )
