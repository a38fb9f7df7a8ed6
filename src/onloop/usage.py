"""Tokens and money.

Money is always `Decimal`. A cost always says where it came from: the agent CLI reported it, onloop
computed it from a price table, or nobody knows. Claude Code, for example, reports a dollar figure
computed from its own price table even for a local model behind a custom base URL; onloop keeps the
tokens and says where the dollars came from instead of trusting them blindly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal


class CostSource(enum.Enum):
    REPORTED = "reported"  # the CLI or provider said so
    PRICE_TABLE = "price_table"  # onloop computed it from a price table (genai-prices or the config)
    UNKNOWN = "unknown"  # nobody knows; tokens are still recorded


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Cost:
    amount: Decimal | None
    source: CostSource

    @classmethod
    def unknown(cls) -> Cost:
        return cls(None, CostSource.UNKNOWN)

    @classmethod
    def zero(cls) -> Cost:
        return cls(Decimal("0"), CostSource.PRICE_TABLE)

    def as_decimal(self) -> Decimal:
        return self.amount if self.amount is not None else Decimal("0")


def parse_money(value: str | int | float | Decimal) -> Decimal:
    """Parse an amount such as "5.00", "$5" or 5 into a Decimal; raises ValueError."""
    if isinstance(value, Decimal):
        return value
    text = str(value).strip().lstrip("$").strip()
    try:
        amount = Decimal(text)
    except Exception as exc:  # decimal.InvalidOperation has no useful message
        raise ValueError(f"not an amount of money: {value!r}") from exc
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"not an amount of money: {value!r}")
    return amount
