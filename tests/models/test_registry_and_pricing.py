from __future__ import annotations

from decimal import Decimal

import pytest

from onloop.errors import ConfigError
from onloop.models import ModelConfig, create_model, registry
from onloop.models.anthropic import AnthropicModel
from onloop.models.config import Prices
from onloop.models.openai_compat import OpenAICompatModel
from onloop.models.pricing import compute_cost
from onloop.usage import Cost, CostSource, Usage


def test_builtin_providers_are_registered() -> None:
    assert {"openai", "anthropic", "local"} <= set(registry.names())
    assert isinstance(create_model(ModelConfig(model="gpt-4o")), OpenAICompatModel)
    assert isinstance(create_model(ModelConfig(provider="anthropic", model="claude-haiku-4-5")), AnthropicModel)


def test_unknown_provider_names_the_key() -> None:
    config = ModelConfig.model_construct(provider="nonesuch", model="m")  # bypass validation on purpose
    with pytest.raises(ConfigError) as caught:
        create_model(config, key="models.judge.provider")
    assert caught.value.key == "models.judge.provider"


def test_config_is_strict_and_money_is_exact() -> None:
    config = ModelConfig.model_validate({"model": "x", "prices": {"input": "0.10", "output": "$0.40"}})
    assert config.prices == Prices(input=Decimal("0.10"), output=Decimal("0.40"))
    with pytest.raises(ValueError, match="api_key"):
        ModelConfig.model_validate({"model": "x", "api_key": "sk-..."})  # keys never go in config files


def test_compute_cost_order_of_trust() -> None:
    usage = Usage(1000, 500)
    assert compute_cost("gpt-4o", usage, reported=Decimal("0.5")) == Cost(Decimal("0.5"), CostSource.REPORTED)
    assert compute_cost("gpt-4o", usage, prices=Prices(input=Decimal(1), output=Decimal(2))).amount == Decimal("0.002")
    assert compute_cost("anything", usage, provider="local") == Cost.zero()
    assert compute_cost("gpt-4o", usage, base_url="https://api.openai.com/v1").amount == Decimal("0.0075")
    assert compute_cost("no-such-model-anywhere", usage) == Cost.unknown()


def test_cached_input_price() -> None:
    prices = Prices(input=Decimal(2), output=Decimal(0), cached_input=Decimal(1))
    assert compute_cost("m", Usage(1_000_000, 0, 500_000), prices=prices).amount == Decimal("1.5")
