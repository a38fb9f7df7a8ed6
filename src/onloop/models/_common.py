"""Pieces the wire adapters share: HTTP errors to `ModelError`, tool-call arguments, schemas.

Who decides about retries: onloop, not the SDKs (they are built with `max_retries=0`). A 429 becomes a
`ModelError(rate_limited=True, reset_at=...)` that the loop waits out within the run's caps. Two look-alikes
are deliberately *not* rate limits:
- OpenAI's 429 `insufficient_quota` is a billing state; waiting does not end it, so the run must stop;
- Anthropic's 529 `overloaded_error` is the provider's capacity, not our usage: there is no reset time
  and no quota to wait for, so it is an ordinary transient failure (status 529) that the loop's error
  counting and backoff handle like a 500.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from onloop.models.base import ModelError, ToolCall
from onloop.models.ratelimit import parse_reset

_NOT_RATE_LIMITS = ("insufficient_quota", "billing_hard_limit_reached")


def error_message(body: object, fallback: str) -> str:
    """The human message inside an OpenAI or Anthropic error body."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return fallback


def error_code(body: object) -> str:
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            return str(inner.get("code") or inner.get("type") or "")
    return ""


def status_error(provider: str, status: int, headers: Mapping[str, str], body: object, fallback: str,
                 now: datetime) -> ModelError:
    """A `ModelError` for an HTTP error status, with the rate-limit reset where the provider gave one."""
    message = error_message(body, fallback)
    code = error_code(body)
    if status == 429 and code not in _NOT_RATE_LIMITS:
        reset_at = parse_reset(headers, now, message)
        return ModelError(f"{provider}: rate limited (HTTP 429): {message}", rate_limited=True,
                          reset_at=reset_at, status=status)
    return ModelError(f"{provider}: HTTP {status}{f' {code}' if code else ''}: {message}", status=status)


def parse_arguments(call_id: str, name: str, raw: str | Mapping[str, Any] | None) -> ToolCall:
    """A ToolCall from JSON-text arguments; invalid text is kept for the agent to report back."""
    if isinstance(raw, Mapping):
        return ToolCall(call_id, name, dict(raw))
    text = raw or "{}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return ToolCall(call_id, name, {}, invalid_arguments=text)
    if not isinstance(value, dict):
        return ToolCall(call_id, name, {}, invalid_arguments=text)
    return ToolCall(call_id, name, value)


def schema_name(schema: Mapping[str, Any]) -> str:
    title = schema.get("title")
    return str(title) if isinstance(title, str) and title.isidentifier() else "response"
