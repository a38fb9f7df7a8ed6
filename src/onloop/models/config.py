"""The configuration of one chat model, validated at the boundary (onloop.toml, backend options).

The key is never part of the configuration: `api_key_env` names the environment variable that holds it,
so a config file can be committed, printed and logged without leaking anything. `base_url` is resolved
to the provider's public endpoint here, not inside the SDK, so that the URL onloop checks against the
no-real-calls switch (`onloop.safety`) is exactly the URL the SDK calls: the SDKs would otherwise read
`OPENAI_BASE_URL` / `ANTHROPIC_BASE_URL` from the environment behind our back.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from onloop.errors import ConfigError
from onloop.safety import is_loopback_url
from onloop.usage import parse_money

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}
DEFAULT_KEY_ENVS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
# Local servers (Ollama, llama.cpp, vLLM, the fake model server) accept any key; the SDKs insist on one.
PLACEHOLDER_KEY = "onloop-no-key"


def _money(value: Any) -> Decimal:
    return parse_money(value)


Money = Annotated[Decimal, BeforeValidator(_money)]


class Prices(BaseModel):
    """A price override in USD per million tokens, given as strings ("2.50") to stay exact."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Money = Field(description="USD per million input tokens, e.g. '2.50'")
    output: Money = Field(description="USD per million output tokens, e.g. '10.00'")
    cached_input: Money | None = Field(
        None, description="USD per million cached input tokens (defaults to the input price)"
    )


class ModelConfig(BaseModel):
    """One chat model: which wire API, which model, where, and how to pay for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["openai", "anthropic", "local"] = Field(
        "openai",
        description="wire API: openai (any OpenAI-compatible endpoint), anthropic (Messages API), "
        "local (embedded SmolLM2 via llama-cpp-python: plumbing and demos only, never a gate)",
    )
    model: str = Field(description="the model id as the provider knows it, e.g. 'gpt-4o-mini'")
    base_url: str | None = Field(
        None, description="endpoint, e.g. 'http://127.0.0.1:11434/v1' for Ollama; default: the provider's own"
    )
    api_key_env: str | None = Field(
        None, description="name of the environment variable holding the API key (never the key itself)"
    )
    temperature: float | None = Field(None, ge=0, le=2, description="sampling temperature; unset: provider default")
    max_tokens: int = Field(4096, ge=1, description="largest number of output tokens per call")
    timeout: float = Field(600.0, gt=0, description="seconds one call may take before it fails")
    stream: bool | None = Field(
        None,
        description="stream the response; default: off for openai (usage is then always present, even from "
        "llama.cpp servers), on for anthropic (its SDK refuses long non-streaming calls)",
    )
    prices: Prices | None = Field(None, description="price override; otherwise genai-prices' table is used")

    def resolved_base_url(self) -> str | None:
        if self.provider == "local":
            return None
        return self.base_url or DEFAULT_BASE_URLS[self.provider]

    def resolve_api_key(self) -> str:
        """The key from the named environment variable. Never logged, never stored."""
        env_name = self.api_key_env or DEFAULT_KEY_ENVS.get(self.provider, "")
        value = os.environ.get(env_name, "") if env_name else ""
        if value:
            return value
        base_url = self.resolved_base_url()
        if self.api_key_env is None and base_url is not None and is_loopback_url(base_url):
            return PLACEHOLDER_KEY
        raise ConfigError(
            f"the environment variable {env_name!r} holding the API key is not set",
            key="api_key_env",
        )
