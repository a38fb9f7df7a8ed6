"""onloop: run AI coding agents unattended, in verified loops, on git repositories.

The public API is what this module exports; it is loaded lazily, so that `import onloop` (which every
onloop subprocess does, the scripted agent included) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "start_run": "onloop.loop.api",
    "resume_run": "onloop.loop.api",
    "RunOutcome": "onloop.loop.engine",
    "StopReason": "onloop.loop.stop",
    "Config": "onloop.config",
    "load_config": "onloop.config",
    "parse_config": "onloop.config",
    "Policy": "onloop.policy.model",
    "OnloopError": "onloop.errors",
    "ConfigError": "onloop.errors",
    "Database": "onloop.store.db",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'onloop' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
