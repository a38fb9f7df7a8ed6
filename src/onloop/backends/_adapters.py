"""Small pieces the Codex, aider, opencode and command adapters share.

- `short`: one-line summaries for events (the raw fields stay in `AgentEvent.data`);
- `backend_home`: a persistent, onloop-owned directory per backend for a CLI's own state (Codex's
  `CODEX_HOME`, opencode's XDG dirs), because those CLIs cache things there between runs and Codex
  refuses to work with its home under /tmp;
- `price`: where a run's dollars come from, the same rule for every adapter that does not get a
  trustworthy figure from the CLI itself (see `onloop.usage.CostSource`).
"""

from __future__ import annotations

import logging
import tempfile
from decimal import Decimal, InvalidOperation
from pathlib import Path

from onloop.models.config import Prices
from onloop.usage import Cost, CostSource, Usage

log = logging.getLogger(__name__)


def short(text: str, limit: int = 200) -> str:
    """`text` on one line, cut to `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def money(value: object) -> Decimal | None:
    """A dollar figure an agent printed, or None (logged) when it is not a number."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        log.warning("ignoring a cost that is not a number: %.50r", value)
        return None
    return amount if amount.is_finite() else None


def backend_home(kind: str, name: str, explicit: str | None) -> Path:
    """The state directory of backend `name`: `explicit` if given, else `<ONLOOP_HOME>/<kind>/<name>`."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    from onloop.store.db import onloop_home

    return (onloop_home() / kind / name).resolve()


def is_under_tmp(path: Path) -> bool:
    """Whether `path` is below /tmp or the platform's temporary directory."""
    roots = {Path("/tmp").resolve(), Path(tempfile.gettempdir()).resolve()}
    resolved = path.resolve()
    return any(resolved == root or root in resolved.parents for root in roots)


def price(
    usage: Usage,
    *,
    model: str | None,
    base_url: str | None,
    prices: Prices | None,
    reported: Decimal | None = None,
) -> Cost:
    """The cost of a run, in order of trust.

    1. `prices` from the backend's options (per million tokens): PRICE_TABLE;
    2. a figure the CLI reported, unless it talks to a custom `base_url` (the CLI prices tokens from
       its own table by model name, which says nothing about a local or proxied model): REPORTED;
    3. a custom `base_url` with no prices: UNKNOWN (tokens are still recorded);
    4. the model's list price from `onloop.models.pricing` (genai-prices, offline): PRICE_TABLE, or
       UNKNOWN when the model is not in the table or not configured.
    """
    from onloop.models.pricing import compute_cost, cost_from_prices

    if prices is not None:
        return Cost(cost_from_prices(usage, prices), CostSource.PRICE_TABLE)
    if base_url:
        return Cost.unknown()
    if reported is not None:
        return Cost(reported, CostSource.REPORTED)
    if not model:
        return Cost.unknown()
    return compute_cost(model.split("/", 1)[-1], usage, provider=_provider(model))


def _provider(model: str) -> str:
    prefix = model.split("/", 1)[0] if "/" in model else ""
    return "anthropic" if prefix == "anthropic" else "openai"
