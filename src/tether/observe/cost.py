"""Pricing model calls with genai-prices, when they are recorded.

Every priced call stores the usage and the price-data version, so spend can be recomputed when
prices change. A model genai-prices does not know is *unpriced*: it is reported as such and
never counted as zero. Overrides (your negotiated rates, a self-hosted model) take precedence.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import genai_prices

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
    """Price one call. `model` may carry its provider (``openai:gpt-4.1-mini``)."""
    provider, name = split_model_name(model, provider)
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
