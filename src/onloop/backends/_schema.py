"""Validating agent CLI output at the boundary: pydantic models of the events the adapters read.

An agent CLI's output is foreign input: a new version renames a field, a proxy puts `NaN` where a cost
was, a bug prints a string where a count belongs. The stream parsers validate every event they use
against a model of the fields they read (unknown fields and unknown event types are allowed: CLIs add
them all the time), and an event that does not match is skipped and counted in
`AgentResult.malformed_events`, never an exception out of the adapter.

Accounting fields are validated on their own (`tokens`, `money`), so that a malformed usage block or
cost costs only that: the event's other fields still count, the cost becomes unknown, and the count of
malformed things goes up. Numbers are strict: `"12"`, `true` and `1.5` are not token counts.
"""

from __future__ import annotations

import logging
import math
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


def _none_is_zero(value: object) -> object:
    return 0 if value is None else value


# A token count: a JSON integer >= 0; null (which some CLIs print for "none") counts as 0.
Tokens = Annotated[int, BeforeValidator(_none_is_zero), Field(ge=0, strict=True)]


class Event(BaseModel):
    """Base of the event models: extra fields allowed (CLIs add them), values kept as given."""

    model_config = ConfigDict(extra="allow", frozen=True)


def parse(model: type[M], value: Any) -> M | None:
    """`value` as `model`, or None (logged at debug level) when it does not match."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        log.debug("agent output does not match %s: %s", model.__name__, exc.errors()[:3])
        return None


def money(value: object) -> Decimal | None:
    """A dollar figure: a finite number >= 0 (a JSON number, or a numeric string), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount >= 0 else None
