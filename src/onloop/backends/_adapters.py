"""Small pieces the Codex, aider, opencode and command adapters share.

- `short`: one-line summaries for events (the raw fields stay in `AgentEvent.data`);
- `backend_home`: a persistent, onloop-owned directory per backend for a CLI's own state (Codex's
  `CODEX_HOME`, opencode's XDG dirs), because those CLIs cache things there between runs and Codex
  refuses to work with its home under /tmp;
- `write_atomic`: the CLI config onloop rewrites before every run, through a temporary sibling and a
  rename, so a CLI starting at the same moment never reads half a file;
- `pass_api_key`: which key variable an adapter hands the CLI, for a hosted provider or a custom
  `base_url` (a local server with no key configured still wants some key, any key);
- `failure_result`: a failed run is AUTH_FAILED when its error says the credentials were refused,
  RATE_LIMITED when it is a rate limit, else FAILED;
- `price`: where a run's dollars come from, the same rule for every adapter that does not get a
  trustworthy figure from the CLI itself (see `onloop.usage.CostSource`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from onloop.backends import _schema, ratelimits
from onloop.backends._cli import pass_secret
from onloop.backends.auth import is_auth_failure
from onloop.backends.base import AgentResult, AgentStatus
from onloop.models.config import Prices
from onloop.usage import Cost, CostSource, Usage

log = logging.getLogger(__name__)


def short(text: str, limit: int = 200) -> str:
    """`text` on one line, cut to `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def money(value: object) -> Decimal | None:
    """A dollar figure an agent printed, or None (logged) when it is not a finite number >= 0."""
    amount = _schema.money(value)
    if amount is None:
        log.warning("ignoring a cost that is not a finite number >= 0: %.50r", value)
    return amount


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


def write_atomic(path: Path, text: str) -> Path:
    """Write `path` (creating its directory) through a temporary sibling and a rename; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def pass_api_key(
    env: dict[str, str],
    api_key_env: str | None,
    *,
    base_url: str | None,
    local_key_var: str,
    custom_target: str | None = None,
    hosted_target: str | None = None,
) -> None:
    """Put the configured API key into the agent's `env`, under `custom_target` behind a custom
    `base_url` and `hosted_target` otherwise (None: the variable's own name). A custom endpoint without
    `api_key_env` gets a placeholder in `local_key_var`, the variable the CLI's config points at."""
    if base_url:
        if api_key_env:
            pass_secret(env, api_key_env, target=custom_target)
        else:
            env[local_key_var] = "onloop-local"
    else:
        pass_secret(env, api_key_env, target=hosted_target)


def failure_result(error: str, text: str, now: datetime, common: dict[str, Any]) -> AgentResult:
    """A run that failed with `error` (the CLI's own error text): AUTH_FAILED when it says the credentials
    were refused, RATE_LIMITED (with the reset) when it is a rate limit, else FAILED."""
    if is_auth_failure(error):
        return AgentResult(AgentStatus.AUTH_FAILED, text, error=error[:300], **common)
    hit = ratelimits.detect(error, now)
    if hit is not None:
        return AgentResult(AgentStatus.RATE_LIMITED, text, error=hit.message, rate_limit_reset=hit.reset, **common)
    return AgentResult(AgentStatus.FAILED, text, error=error[:300], **common)


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
