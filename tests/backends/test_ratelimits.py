"""Rate and usage limits in each CLI's words, and their reset times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from onloop.backends.ratelimits import detect, is_rate_limit, parse_reset_time

NOW = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "reset"),
    [
        ("Claude AI usage limit reached|1767225600", datetime(2026, 1, 1, tzinfo=UTC)),
        ("You've hit your usage limit. Visit https://chatgpt.com/codex/settings/usage to purchase more credits "
         "or try again at 3:28 PM.", datetime(2026, 11, 22, 15, 28, tzinfo=UTC)),
        ("You've hit your usage limit. Try again at 1:05 PM.", datetime(2026, 11, 23, 13, 5, tzinfo=UTC)),
        ("You've hit your usage limit. To get more access now, send a request to your admin or try again in "
         "3 days 6 hours 57 minutes.", NOW + timedelta(days=3, hours=6, minutes=57)),
        ("You've hit your usage limit. Try again Aug 18.", datetime(2027, 8, 18, tzinfo=UTC)),
        ("You've hit your usage limit ... try again at Dec 8th, 2026 12:30 PM",
         datetime(2026, 12, 8, 12, 30, tzinfo=UTC)),
        ("You've hit your limit · resets 3pm (Europe/Paris)", datetime(2026, 11, 22, 14, 0, tzinfo=UTC)
         + timedelta(days=1)),
        ("Rate limit exceeded. Please try again in 20s.", NOW + timedelta(seconds=20)),
        ("429 Too Many Requests; retry-after: 42", NOW + timedelta(seconds=42)),
        ("exceeded retry limit, last status: 429 Too Many Requests, request id: abc", None),
        ("The API provider has rate limited you. Try again later or check your quotas.\nRetrying in 0.2 seconds...",
         None),
    ],
)
def test_limits_and_reset_times(text: str, reset: datetime | None) -> None:
    hit = detect(text, NOW)
    assert hit is not None
    assert hit.reset == reset


@pytest.mark.parametrize(
    "text",
    ["All 4290 tests passed.", "Fixed the limiter's off-by-one.", "stream disconnected before completion",
     "Reconnecting... 1/5"],
)
def test_ordinary_text_is_not_a_limit(text: str) -> None:
    assert not is_rate_limit(text)
    assert detect(text, NOW) is None


def test_reset_times_are_timezone_aware_and_never_in_the_past() -> None:
    for text in ("try again at 9:00 AM", "resets at 13:59 UTC", "try again at 2pm"):
        moment = parse_reset_time(text, NOW)
        assert moment is not None and moment.tzinfo is not None
        assert NOW < moment <= NOW + timedelta(days=1)
    assert parse_reset_time("try again 3", NOW) is None
