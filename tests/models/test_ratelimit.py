from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from onloop.models.ratelimit import parse_go_duration, parse_reset, reset_from_headers, reset_from_message

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "seconds"), [
    ("6m0s", 360.0), ("1s", 1.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0s", 0.0),
])
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "6 minutes", "abc", "1x"])
def test_not_go_durations(text: str) -> None:
    assert parse_go_duration(text) is None


def test_retry_after_seconds_and_http_date() -> None:
    assert reset_from_headers({"Retry-After": "20"}, NOW) == NOW + timedelta(seconds=20)
    date = reset_from_headers({"retry-after": "Sun, 22 Nov 2026 12:05:00 GMT"}, NOW)
    assert date == datetime(2026, 11, 22, 12, 5, tzinfo=UTC)
    assert reset_from_headers({"retry-after-ms": "1500"}, NOW) == NOW + timedelta(seconds=1.5)


def test_retry_after_wins_over_ratelimit_headers() -> None:
    headers = {"retry-after": "5", "x-ratelimit-reset-requests": "6m0s"}
    assert reset_from_headers(headers, NOW) == NOW + timedelta(seconds=5)


def test_openai_reset_prefers_the_exhausted_limit() -> None:
    headers = {"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-remaining-requests": "50",
               "x-ratelimit-reset-tokens": "1s", "x-ratelimit-remaining-tokens": "0"}
    assert reset_from_headers(headers, NOW) == NOW + timedelta(seconds=1)


def test_openai_reset_without_remaining_takes_the_latest() -> None:
    headers = {"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-reset-tokens": "1s"}
    assert reset_from_headers(headers, NOW) == NOW + timedelta(minutes=6)


def test_anthropic_rfc3339_resets() -> None:
    headers = {"anthropic-ratelimit-requests-reset": "2026-11-22T12:00:30Z",
               "anthropic-ratelimit-requests-remaining": "0",
               "anthropic-ratelimit-tokens-reset": "2026-11-22T12:10:00Z",
               "anthropic-ratelimit-tokens-remaining": "1000"}
    assert reset_from_headers(headers, NOW) == datetime(2026, 11, 22, 12, 0, 30, tzinfo=UTC)


def test_reset_from_message_text() -> None:
    assert reset_from_message("Rate limit reached. Please try again in 6m0s.", NOW) == NOW + timedelta(minutes=6)
    assert reset_from_message("please retry after 30 seconds", NOW) == NOW + timedelta(seconds=30)
    assert reset_from_message("slow down", NOW) is None


def test_no_information_means_no_reset() -> None:
    assert parse_reset({"content-type": "application/json", "retry-after": "soon"}, NOW, "busy") is None
