"""The run's counters: what the stop rules decide on, persisted after every iteration.

Kept as one mutable object inside the engine and written to the `runs` row together with each receipt
(one transaction), so `--resume` after a `kill -9` continues with exactly the same counters and spend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from onloop.store.runs import RunRow


@dataclass
class RunState:
    iterations_done: int = 0
    elapsed_seconds: float = 0.0
    spend_usd: Decimal = field(default_factory=lambda: Decimal("0"))
    tokens_in: int = 0
    tokens_out: int = 0
    no_progress_streak: int = 0
    stuck_streak: int = 0
    last_fingerprint: str | None = None
    agent_error_streak: int = 0
    breaches: int = 0
    last_checkpoint: str | None = None

    @classmethod
    def from_row(cls, row: RunRow) -> RunState:
        return cls(
            iterations_done=row.iterations_done,
            elapsed_seconds=row.elapsed_seconds,
            spend_usd=row.spend_usd,
            tokens_in=row.tokens_in,
            tokens_out=row.tokens_out,
            no_progress_streak=row.no_progress_streak,
            stuck_streak=row.stuck_streak,
            last_fingerprint=row.last_fingerprint,
            agent_error_streak=row.agent_error_streak,
            breaches=row.breaches,
            last_checkpoint=row.last_checkpoint,
        )

    def counters(self) -> dict[str, Any]:
        return {
            "iterations_done": self.iterations_done,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "spend_usd": self.spend_usd,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "no_progress_streak": self.no_progress_streak,
            "stuck_streak": self.stuck_streak,
            "last_fingerprint": self.last_fingerprint,
            "agent_error_streak": self.agent_error_streak,
            "breaches": self.breaches,
            "last_checkpoint": self.last_checkpoint,
        }

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out
