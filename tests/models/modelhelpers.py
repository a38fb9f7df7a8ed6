"""Helpers shared by the model tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


class FixedClock:
    """Wall time frozen at NOW; monotonic and sleep real (only reset times need a fixed `now`)."""

    def now(self) -> datetime:
        return NOW

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        raise AssertionError("models must not sleep")
