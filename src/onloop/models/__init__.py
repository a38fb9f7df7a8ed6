"""Chat models: the registry and `create_model`. The protocol is in `onloop.models.base`.

Model kinds are registered by wire API (`provider` in the config): `openai` for every
OpenAI-compatible endpoint, `anthropic` (extra `onloop[anthropic]`) and `local` (extra
`onloop[local]`: the embedded SmolLM2, for plumbing and demos only, far too weak to judge or code).
Built-ins register through the same hook a plugin uses (entry-point group `onloop.models`, a function
taking `register(name, factory)`); each factory takes a `ModelConfig` and returns a `ChatModel`.
Adapters are imported only when created, so `import onloop.models` stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from onloop.models.base import ChatModel, Message, ModelError, ModelRequest, ModelResponse, ToolCall, ToolSpec
from onloop.models.config import ModelConfig, Prices
from onloop.plugins import Registry

ModelFactory = Callable[[ModelConfig], ChatModel]

__all__ = [
    "ChatModel",
    "Message",
    "ModelConfig",
    "ModelError",
    "ModelFactory",
    "ModelRequest",
    "ModelResponse",
    "Prices",
    "ToolCall",
    "ToolSpec",
    "create_model",
    "registry",
]


def _lazy(module_name: str) -> ModelFactory:
    def factory(config: ModelConfig) -> ChatModel:
        module = importlib.import_module(f"onloop.models.{module_name}")
        model: ChatModel = module.create(config)
        return model

    return factory


def register_builtin(register: Callable[[str, ModelFactory], None]) -> None:
    """Entry point `onloop.models`: registers the built-in wire APIs (imported lazily)."""
    register("openai", _lazy("openai_compat"))
    register("anthropic", _lazy("anthropic"))
    register("local", _lazy("local"))


registry: Registry[ModelFactory] = Registry("models", register_builtin)


def create_model(config: ModelConfig, *, key: str = "provider") -> ChatModel:
    """The `ChatModel` for `config`; an unknown provider is a `ConfigError` naming `key`."""
    return registry.get(config.provider, key=key)(config)
