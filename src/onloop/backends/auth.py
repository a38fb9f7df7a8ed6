"""Recognising refused credentials in agent output, and telling the operator which variable to fix.

A refused key is the one failure that no retry can fix: the loop stops at once (stop reason
`agent_error`) instead of burning `run.agent_error_limit` iterations, each of them spent inside the
CLI's own retries. What the CLIs print (all captured from real binaries against the fake model server
answering 401, `tests/data/agent-cli/*auth*`, `claude-not-logged-in.jsonl`, `claude-oauth-expired.jsonl`):

- Claude Code 2.1.197: ``api_retry`` system events with ``error_status: 401`` and ``error:
  "authentication_failed"`` while it retries (ten times, with a backoff growing to ~37 s: three minutes
  by default), then a synthetic assistant message carrying ``"error": "authentication_failed"`` and a
  result with ``api_error_status: 401`` and text ``Invalid API key · Fix external API key``, ``Failed
  to authenticate. API Error: 401 OAuth token has expired...``, or, with no credentials at all,
  ``Not logged in · Please run /login`` (no request is even sent);
- codex-cli 0.171.0: ``{"type":"error","message":"Reconnecting... 1/5 (unexpected status 401
  Unauthorized: Incorrect API key provided ...)"}`` per retry, then ``error`` and ``turn.failed`` with
  the same text, exit 1;
- the built-in agent: a `ModelError` with status 401 or 403 from the SDK.

The structured signals (statuses, Claude's ``authentication_failed``) come first; the text patterns
below are the fallback, and they are only ever applied to the CLI's own error text, never to what the
agent wrote (an agent may well be fixing a "401 Unauthorized" handler).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

AUTH_STATUSES = frozenset({401, 403})
_AUTH_WORDS = re.compile(
    r"\b401\b|unauthori[sz]ed|invalid[ _-]?api[ _-]?key|incorrect api key|invalid x-api-key|authentication[ _]error"
    r"|authentication[ _]failed|failed to authenticate|please run /login|not logged in|oauth token has expired"
    r"|token (?:has )?expired|invalid bearer token|api key not valid|no api key|missing api key",
    re.IGNORECASE,
)


def is_auth_failure(text: str) -> bool:
    """Whether this error text (a CLI's own, not the agent's) says the credentials were refused."""
    return bool(_AUTH_WORDS.search(text))


@dataclass(frozen=True, slots=True)
class KeyHint:
    """Where a backend's key comes from, to say in one sentence what the operator must set.

    `configured` is the variable named by `api_key_env` (None: no key configured, the CLI's own login
    or a placeholder is used); `passed_as` the variable the CLI reads it from; `suggested` the usual
    variable for the provider; `login` how to log the CLI in instead, when it can.
    """

    backend: str
    kind: str
    configured: str | None
    passed_as: str | None
    suggested: str
    login: str | None = None

    def advice(self) -> str:
        key = f"backends.{self.backend}.api_key_env"
        passed = f" (onloop passes it to the CLI as {self.passed_as})" if self.passed_as else ""
        if self.configured:
            text = f"check the key in {self.configured}, the variable {key} names{passed}"
        else:
            text = f"set {self.suggested} and name it in {key}{passed}"
        if self.login:
            text += f", or {self.login}"
        return text


def auth_failed_message(hint: KeyHint, detail: str) -> str:
    """The operator's message: which backend, what the provider said, and which variable to fix."""
    said = " ".join(detail.split())[:240] or "no detail"
    return (f"{hint.kind} backend {hint.backend!r}: the provider refused the credentials ({said}); "
            f"{hint.advice()}. onloop stops instead of retrying: another try cannot fix a refused key")
