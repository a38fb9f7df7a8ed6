"""Agent backends. See `onloop.backends.base` for the protocol; each backend is its own module."""

from __future__ import annotations

from collections.abc import Callable

from onloop.backends.base import (
    AgentBackend,
    AgentEvent,
    AgentRequest,
    AgentResult,
    AgentStatus,
    BackendFactory,
    BackendSpec,
    Capabilities,
)
from onloop.plugins import Registry

__all__ = [
    "AgentBackend",
    "AgentEvent",
    "AgentRequest",
    "AgentResult",
    "AgentStatus",
    "BackendFactory",
    "BackendSpec",
    "Capabilities",
    "create_backend",
    "registry",
]


def register_builtin(register: Callable[[str, BackendFactory], None]) -> None:
    """Entry point `onloop.backends`: registers every built-in backend kind (imported lazily)."""
    from onloop.backends import claude_code, scripted

    register("claude_code", claude_code.create)
    register("scripted", scripted.create)
    for module_name in ("codex", "aider", "opencode", "command", "builtin"):
        _register_optional(register, module_name)


def _register_optional(register: Callable[[str, BackendFactory], None], module_name: str) -> None:
    import importlib

    try:
        module = importlib.import_module(f"onloop.backends.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"onloop.backends.{module_name}":
            return  # not built yet in this checkout
        raise
    register(module_name, module.create)


registry: Registry[BackendFactory] = Registry("backends", register_builtin)


def create_backend(spec: BackendSpec) -> AgentBackend:
    return registry.get(spec.kind, key=f"backends.{spec.name}.kind")(spec)
