"""When may we call again? Reset times parsed from rate-limit headers and error messages.

Providers say it in different ways, all handled here:

- `retry-after`: seconds ("20") or an HTTP date ("Wed, 21 Oct 2026 07:28:00 GMT"); `retry-after-ms`;
- OpenAI: `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` as Go-style durations ("6m0s",
  "1s", "20ms", "1h2m3.5s"), next to `x-ratelimit-remaining-*`;
- Anthropic: `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-reset` as RFC 3339
  timestamps, next to `anthropic-ratelimit-*-remaining`;
- free text: "Please try again in 6m0s", "retry after 30 seconds".

When several limits give a reset, the ones whose `remaining` is 0 are the ones that bit, so they are
preferred; with no such hint the latest reset is taken, because waiting too little just earns another
429 while waiting a little too long costs only time. `retry-after` is the provider's explicit answer
and wins over everything else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_GO_WHOLE = re.compile(r"^\s*(?:\d+(?:\.\d+)?(?:ms|h|m|s))+\s*$")
_MESSAGE_PATTERNS = (
    re.compile(r"try again in\s+((?:\d+(?:\.\d+)?(?:ms|h|m|s))+)", re.IGNORECASE),
    re.compile(r"(?:retry|try again) (?:after|in)\s+(\d+(?:\.\d+)?)\s*(?:seconds|secs?|s)\b", re.IGNORECASE),
)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


MIN_WAIT_SECONDS = 1.0  # a reset already past, or a second away, still gets a pause before the retry


def wait_seconds(reset_at: datetime | None, now: datetime, default: float) -> float:
    """How long to wait for a limit to reset: until `reset_at`, or `default` when the provider gave no
    reset; never less than `MIN_WAIT_SECONDS`."""
    wait = (reset_at - now).total_seconds() if reset_at is not None else default
    return max(MIN_WAIT_SECONDS, wait)


def parse_go_duration(text: str) -> float | None:
    """Seconds from "6m0s", "1s", "20ms", "1h2m3.5s"; None if it is not such a duration."""
    if not _GO_WHOLE.match(text):
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _GO_DURATION.findall(text))


def parse_retry_after(value: str, now: datetime) -> datetime | None:
    """`retry-after` as seconds or as an HTTP date."""
    text = value.strip()
    try:
        return now + timedelta(seconds=max(0.0, float(text)))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_rfc3339(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def reset_from_headers(headers: Mapping[str, str], now: datetime) -> datetime | None:
    """The reset time the headers announce, or None."""
    lower = {key.lower(): value for key, value in headers.items()}
    if "retry-after-ms" in lower:
        try:
            return now + timedelta(milliseconds=max(0.0, float(lower["retry-after-ms"])))
        except ValueError:
            pass
    if "retry-after" in lower:
        explicit = parse_retry_after(lower["retry-after"], now)
        if explicit is not None:
            return explicit
    return _pick(_openai_resets(lower, now)) or _pick(_anthropic_resets(lower))


def reset_from_message(message: str, now: datetime) -> datetime | None:
    """A reset time buried in an error message ("Please try again in 6m0s"), or None."""
    for pattern in _MESSAGE_PATTERNS:
        match = pattern.search(message)
        if not match:
            continue
        seconds = parse_go_duration(match.group(1))
        if seconds is None:
            seconds = float(match.group(1))
        return now + timedelta(seconds=seconds)
    return None


def parse_reset(headers: Mapping[str, str], now: datetime, message: str = "") -> datetime | None:
    """Headers first (precise), then the message text."""
    return reset_from_headers(headers, now) or reset_from_message(message, now)


# (reset time, exhausted) pairs; `exhausted` means the matching `remaining` header said 0.
_Reset = tuple[datetime, bool]


def _openai_resets(lower: Mapping[str, str], now: datetime) -> list[_Reset]:
    resets: list[_Reset] = []
    for kind in ("requests", "tokens"):
        raw = lower.get(f"x-ratelimit-reset-{kind}")
        seconds = parse_go_duration(raw) if raw else None
        if seconds is None and raw:
            seconds = _float_or_none(raw)
        if seconds is not None:
            exhausted = lower.get(f"x-ratelimit-remaining-{kind}", "").strip() == "0"
            resets.append((now + timedelta(seconds=seconds), exhausted))
    return resets


def _anthropic_resets(lower: Mapping[str, str]) -> list[_Reset]:
    resets: list[_Reset] = []
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        raw = lower.get(f"anthropic-ratelimit-{kind}-reset")
        moment = parse_rfc3339(raw) if raw else None
        if moment is not None:
            exhausted = lower.get(f"anthropic-ratelimit-{kind}-remaining", "").strip() == "0"
            resets.append((moment, exhausted))
    return resets


def _pick(resets: list[_Reset]) -> datetime | None:
    if not resets:
        return None
    exhausted = [moment for moment, is_exhausted in resets if is_exhausted]
    return max(exhausted or [moment for moment, _ in resets])


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
