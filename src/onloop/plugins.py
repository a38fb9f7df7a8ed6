"""Name-to-factory registries for every pluggable kind (backends, models, gate parsers, ...).

Plugins only *register* things: an entry point in group `onloop.<kind>` names a function that takes a
`register(name, factory)` callable. onloop's own built-ins load through the very same path, so a
third-party backend is a first-class citizen and the built-ins cannot cheat.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Generic, TypeVar

from onloop.errors import ConfigError

F = TypeVar("F")


class Registry(Generic[F]):
    def __init__(self, kind: str, builtin: Callable[[Callable[[str, F], None]], None]) -> None:
        self.kind = kind
        self._builtin = builtin
        self._factories: dict[str, F] = {}
        self._loaded = False

    def register(self, name: str, factory: F) -> None:
        self._factories[name] = factory

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        self._builtin(self.register)
        for entry in importlib.metadata.entry_points(group=f"onloop.{self.kind}"):
            if entry.module.startswith("onloop."):
                continue  # the built-ins were registered above, through the same hook
            hook = entry.load()
            hook(self.register)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._factories)

    def get(self, name: str, *, key: str | None = None) -> F:
        self._load()
        try:
            return self._factories[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind[:-1] if self.kind.endswith('s') else self.kind} {name!r}",
                key=key,
                allowed=self.names(),
            ) from None
