"""Pricing a recorded model call from rates derived once per model gives exactly what
genai-prices gives call by call, and models whose prices are not one flat set of rates (tiers
by prompt size) are still priced by genai-prices itself."""

from __future__ import annotations

import random
from decimal import Decimal

import genai_prices
import pytest

from tether.observe.cost import PRICE_DATA_VERSION, _linear_rates, price_call  # pyright: ignore[reportPrivateUsage]


def genai(model: str, provider: str, input_tokens: int, output_tokens: int) -> float:
    calc = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=input_tokens, output_tokens=output_tokens),
        model_ref=model,
        provider_id=provider,
    )
    return float(Decimal(str(calc.total_price)))


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-4.1-mini", "openai"),
        ("gpt-4o", "openai"),
        ("gemini-2.5-flash", "google"),
        # tiered: the price per token changes past 200k prompt tokens
        ("gemini-2.5-pro", "google"),
        ("claude-sonnet-4-5", "anthropic"),
    ],
)
def test_price_equals_genai_prices_call_by_call(model: str, provider: str) -> None:
    rng = random.Random(7)
    counts = [(0, 0), (1, 0), (0, 1), (199_999, 10), (200_001, 10), (1_000_000, 1_000_000)]
    counts += [(rng.randint(0, 2_000_000), rng.randint(0, 200_000)) for _ in range(200)]
    for inputs, outputs in counts:
        price = price_call(model, provider=provider, input_tokens=inputs, output_tokens=outputs)
        assert price.cost_usd == genai(model, provider, inputs, outputs), (model, inputs, outputs)
        assert price.source == PRICE_DATA_VERSION


def test_flat_rates_are_derived_once_and_tiered_models_have_none() -> None:
    assert _linear_rates("openai", "gpt-4.1-mini") is not None
    assert _linear_rates("google", "gemini-2.5-pro") is None  # tiers by prompt size
    assert _linear_rates("acme", "acme-llm-9") is None  # unknown: priced (or not) call by call
    assert price_call("acme-llm-9", provider="acme", input_tokens=10).cost_usd is None


def test_when_genai_prices_internals_move_calls_are_priced_call_by_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The flat rates read genai-prices' snapshot, which is not its public API: if that breaks,
    # pricing falls back to calc_price rather than failing every recorded call.
    import sys
    import types

    # The snapshot module gone from where tether imports it (genai-prices keeps its own
    # reference, so calc_price still works).
    monkeypatch.setitem(sys.modules, "genai_prices.data_snapshot", types.ModuleType("moved"))
    price = price_call("gpt-4o", provider="openai", input_tokens=1234, output_tokens=56)
    assert price.cost_usd == genai("gpt-4o", "openai", 1234, 56)
