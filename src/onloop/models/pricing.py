"""What a model call cost, in Decimal dollars, and where that number came from.

Order of trust:
1. the provider's own report (OpenRouter's `usage.cost`): source REPORTED;
2. the `prices` override in the model's config (per million tokens): source PRICE_TABLE;
3. the embedded local model: zero, it runs on this machine;
4. `genai-prices`' offline table (no network: its updater is never started): source PRICE_TABLE;
5. otherwise unknown. Tokens are still recorded, and the budget check says it cannot see the money.

An endpoint on loopback is not assumed free: it may be a LiteLLM proxy in front of a paid API. Give
Ollama or a llama.cpp server `prices = {input = "0", output = "0"}` to say it costs nothing.

`Usage.input_tokens` counts all input tokens, cached ones included (OpenAI's convention; the Anthropic
adapter adds the cache reads and writes in), and `cached_input_tokens` says how many of those were
cache reads.
"""

from __future__ import annotations

from decimal import Decimal

from onloop.models.config import Prices
from onloop.safety import is_loopback_url
from onloop.usage import Cost, CostSource, Usage

_PER_MILLION = Decimal(1_000_000)


def compute_cost(
    model: str,
    usage: Usage,
    *,
    provider: str = "openai",
    base_url: str | None = None,
    prices: Prices | None = None,
    reported: Decimal | None = None,
) -> Cost:
    """The cost of one call with `usage` tokens (see the module docstring for the order of trust)."""
    if reported is not None:
        return Cost(reported, CostSource.REPORTED)
    if prices is not None:
        return Cost(cost_from_prices(usage, prices), CostSource.PRICE_TABLE)
    if provider == "local":
        return Cost.zero()
    amount = _table_price(model, usage, provider, base_url)
    return Cost(amount, CostSource.PRICE_TABLE) if amount is not None else Cost.unknown()


def cost_from_prices(usage: Usage, prices: Prices) -> Decimal:
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    cached_price = prices.cached_input if prices.cached_input is not None else prices.input
    total = (
        Decimal(usage.input_tokens - cached) * prices.input
        + Decimal(cached) * cached_price
        + Decimal(usage.output_tokens) * prices.output
    )
    return total / _PER_MILLION


def _table_price(model: str, usage: Usage, provider: str, base_url: str | None) -> Decimal | None:
    import genai_prices  # imported late: the price table takes ~100 ms to load

    priced_usage = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=min(usage.cached_input_tokens, usage.input_tokens),
    )
    try:
        if base_url and not is_loopback_url(base_url):
            calculation = genai_prices.calc_price(priced_usage, model, provider_api_url=base_url)
        elif provider == "anthropic":
            calculation = genai_prices.calc_price(priced_usage, model, provider_id="anthropic")
        else:
            calculation = genai_prices.calc_price(priced_usage, model)
    except LookupError:
        return None
    total = calculation.total_price
    return total if isinstance(total, Decimal) else Decimal(str(total))
