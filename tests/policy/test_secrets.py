"""Secret detection and scrubbing."""

from __future__ import annotations

import pytest

from onloop.policy.secrets import contains_secret, find_secrets, scrub, shannon_entropy

KNOWN = [
    ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_access_key", "ASIAY34FZKBOKMUTVV7A"),
    ("github_token", "ghp_abcdefghijklmnopqrstuvwxyz0123456789AB"),
    ("github_token", "gho_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("github_token", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEF"),
    ("openai_key", "sk-proj-abcDEF1234567890abcdEFGH"),
    ("openai_key", "sk-abcdefghijklmnopqrstuvwxyz012345"),
    ("anthropic_key", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345"),
    ("slack_token", "xoxb-1234567890-abcdefghij"),
    ("slack_token", "xoxp-1234-5678-abcdefabcdef"),
    ("private_key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"),
    ("private_key", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq\n-----END PRIVATE KEY-----"),
    ("private_key", "-----BEGIN OPENSSH PRIVATE KEY-----\ntruncated without an end"),
]


@pytest.mark.parametrize(("kind", "secret"), KNOWN)
def test_known_formats_are_scrubbed(kind: str, secret: str) -> None:
    text = f"before {secret} after"
    cleaned = scrub(text)
    assert secret not in cleaned
    assert f"[REDACTED:{kind}]" in cleaned
    assert cleaned.startswith("before ")
    assert contains_secret(text)


@pytest.mark.parametrize(
    "text",
    ['password = "hunter2hunter2"', "DB_PASSWORD: 'correct-horse'", 'config["api_key"] = "abcdef123456"',
     'AUTH_TOKEN="Bearer0123456"'],
)
def test_password_assignments(text: str) -> None:
    cleaned = scrub(text)
    assert "[REDACTED:password_assignment]" in cleaned
    assert cleaned.split("=")[0].split(":")[0] == text.split("=")[0].split(":")[0]  # the name stays


@pytest.mark.parametrize(
    "text",
    ['password = "${DB_PASSWORD}"', 'api_key = "changeme"', 'token = "<your token here>"', 'secret = "xxxxxxxx"',
     'password = "{{ vault.db }}"', "commit 3f786850e387550fdab836ed7e6dc881de23001b",
     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "see src/onloop/policy/sandbox.py and very_long_identifier_name_without_digits",
     "def test_writes_outside_worktree_never_reach_the_host(): pass"],
)
def test_no_false_positives_on_ordinary_text(text: str) -> None:
    assert find_secrets(text) == []
    assert scrub(text) == text


def test_high_entropy_tokens() -> None:
    text = "x = Zx8vQ2mN7pL4kR9tW1yB6cF3hJ5gD0sA"
    [match] = find_secrets(text)
    assert match.kind == "high_entropy" and not match.certain
    assert scrub(text) == "x = [REDACTED:high_entropy]"
    assert scrub(text, entropy=False) == text
    assert not contains_secret(text)


def test_several_secrets_in_one_text() -> None:
    text = "a AKIAIOSFODNN7EXAMPLE b sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345 c"
    assert scrub(text) == "a [REDACTED:aws_access_key] b [REDACTED:anthropic_key] c"


def test_entropy() -> None:
    assert shannon_entropy("") == 0
    assert shannon_entropy("aaaa") == 0
    assert shannon_entropy("abcd") == pytest.approx(2.0)
