"""Recognising rate and usage limits in agent CLI output, and reading when they reset.

Every agent CLI reports a limit differently, and none of them as structured data that survives
from one version to the next, so this module works on the text they print:

- Claude Code: a result whose text is ``Claude AI usage limit reached|1767225600`` (an epoch), or an
  ``api_error_status`` of 429, or (newer versions) ``You've hit your limit · resets 3pm (UTC)``;
- Codex: a top-level ``error`` and a ``turn.failed`` saying ``You've hit your usage limit. ... try again
  at 3:28 PM.`` (or ``in 3 days 6 hours 57 minutes``, or ``Aug 18``), or, after its own retries,
  ``exceeded retry limit, last status: 429 Too Many Requests``;
- aider (through litellm): ``litellm.RateLimitError: ...`` followed by ``The API provider has rate
  limited you. Try again later or check your quotas.`` and ``Retrying in 0.2 seconds...``;
- opencode: an ``error`` event whose ``error.data`` carries ``statusCode: 429``.

A limit is not a failure: the loop waits until the reset time (or backs off when it is unknown) and
tries the same iteration again. So a reset time is only returned when the text states one; an
aider-style "Retrying in 0.2 seconds" is the CLI's own retry, not the provider's reset, and is ignored.
Relative times are resolved against an injected ``now`` (the loop's clock), never the wall clock here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_LIMIT_WORDS = re.compile(
    r"rate.?limit|usage limit|hit your limit|limit reached|\b429\b|too many requests|quota exceeded"
    r"|exceeded your current quota|resource_exhausted|overloaded_error",
    re.IGNORECASE,
)
_EPOCH = re.compile(r"limit reached\|(\d{9,11})\b", re.IGNORECASE)
_RELATIVE = re.compile(
    r"\b(?:try again|retry|resets?|reset)\s+(?:in|after)\s+((?:\d+(?:\.\d+)?\s*[a-z]+[\s,]*(?:and\s+)?)+)",
    re.IGNORECASE,
)
_RETRY_AFTER_HEADER = re.compile(r"retry-after\"?\s*[:=]\s*\"?(\d+(?:\.\d+)?)", re.IGNORECASE)
_UNIT_SECONDS = {
    "d": 86400, "day": 86400, "days": 86400,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
}  # fmt: skip
_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_ABSOLUTE = re.compile(
    r"\b(?:try again|resets?)\s+(?:at\s+|on\s+)?"
    r"(?:(?P<month>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?"
    r"(?:,?\s+(?P<year>\d{4}))?(?:,?\s+(?:at\s+)?)?)?"
    r"(?:(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<ampm>[ap]\.?m\.?)?)?"
    r"\s*(?:\(?(?P<zone>UTC|GMT|[A-Z][A-Za-z_]+/[A-Za-z_/]+)\)?)?",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class RateLimitHit:
    """A limit seen in the output: what it said, and when it resets if the text says so."""

    message: str
    reset: datetime | None


def is_rate_limit(text: str) -> bool:
    """Whether this text reports a rate or usage limit (any CLI's wording)."""
    return bool(_LIMIT_WORDS.search(text))


def detect(text: str, now: datetime) -> RateLimitHit | None:
    """The limit reported by `text`, with its reset time, or None when it reports none."""
    if not is_rate_limit(text):
        return None
    return RateLimitHit(text.strip()[:500], parse_reset_time(text, now))


def parse_reset_time(text: str, now: datetime) -> datetime | None:
    """When the limit described by `text` resets (timezone-aware), or None if it does not say."""
    match = _EPOCH.search(text)
    if match:
        return datetime.fromtimestamp(int(match.group(1)), UTC)
    relative = _relative_seconds(text)
    if relative is not None:
        return now + timedelta(seconds=relative)
    return _absolute_time(text, now)


def _relative_seconds(text: str) -> float | None:
    match = _RELATIVE.search(text)
    if match:
        total = 0.0
        for amount, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", match.group(1), re.IGNORECASE):
            seconds = _UNIT_SECONDS.get(unit.lower())
            if seconds is None:
                break  # "in 5 minutes or so": stop at the first word that is not a unit
            total += float(amount) * seconds
        if total > 0:
            return total
    header = _RETRY_AFTER_HEADER.search(text)
    return float(header.group(1)) if header else None


def _absolute_time(text: str, now: datetime) -> datetime | None:
    for match in _ABSOLUTE.finditer(text):
        if match.group("month") is None and match.group("hour") is None:
            continue
        if match.group("month") is None and match.group("ampm") is None and match.group("minute") is None:
            continue  # a bare number ("try again 3") is not a time of day
        moment = _build(match, now)
        if moment is not None:
            return moment
    return None


def _build(match: re.Match[str], now: datetime) -> datetime | None:
    zone = _zone(match.group("zone"))
    local_now = now.astimezone(zone)
    hour, minute = _clock_time(match)
    if hour is None:
        hour, minute = 0, 0
    try:
        if match.group("month"):
            month = _MONTHS[match.group("month")[:3].lower()]
            year = int(match.group("year") or local_now.year)
            moment = datetime(year, month, int(match.group("day")), hour, minute, tzinfo=zone)
            if match.group("year") is None and moment < local_now - timedelta(days=1):
                moment = moment.replace(year=year + 1)  # "Jan 2" said on Dec 30 means next year
        else:
            moment = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            if moment <= local_now:
                moment += timedelta(days=1)  # "at 3:28 PM" said at 4 PM means tomorrow
    except ValueError:
        return None
    return moment.astimezone(UTC)


def _clock_time(match: re.Match[str]) -> tuple[int | None, int]:
    if match.group("hour") is None:
        return None, 0
    hour, minute = int(match.group("hour")), int(match.group("minute") or 0)
    ampm = (match.group("ampm") or "").lower().replace(".", "")
    if ampm == "pm" and hour < 12:
        hour += 12
    elif ampm == "am" and hour == 12:
        hour = 0
    return (hour, minute) if hour < 24 and minute < 60 else (None, 0)


def _zone(name: str | None) -> tzinfo:
    """The zone a CLI named; UTC when it named none (the machines onloop runs on are usually UTC)."""
    if not name or name.upper() in ("UTC", "GMT"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC
