"""Agent backends. See `onloop.backends.base` for the protocol; each backend is its own module."""

from __future__ import annotations

import importlib
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
    PermissionDenial,
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
    "PermissionDenial",
    "create_backend",
    "registry",
]


def register_builtin(register: Callable[[str, BackendFactory], None]) -> None:
    """Entry point `onloop.backends`: registers every built-in backend kind (each imported on use)."""
    for kind in ("claude_code", "codex", "aider", "opencode", "command", "builtin", "scripted"):
        register(kind, _lazy(kind))


def _lazy(kind: str) -> BackendFactory:
    # Importing a backend pulls in its SDK (the built-in agent loads the model clients): only on use.
    def create(spec: BackendSpec) -> AgentBackend:
        factory: BackendFactory = importlib.import_module(f"onloop.backends.{kind}").create
        return factory(spec)

    return create


registry: Registry[BackendFactory] = Registry("backends", register_builtin)


def create_backend(spec: BackendSpec) -> AgentBackend:
    return registry.get(spec.kind, key=f"backends.{spec.name}.kind")(spec)
