"""Claude Code's stream-json, read: the event models and the parser the Claude Code adapter (and the
scripted agent, which speaks the same format) use.

Lines (transcripts in `tests/data/agent-cli/claude-*.jsonl`, all from Claude Code 2.1.197):
- ``system``: ``init`` (session id, model), and ``api_retry`` while the CLI retries a failed API call
  (``attempt``, ``error_status``, ``error``: ``authentication_failed`` for a 401 or 403);
- ``assistant``: a message (``id``, ``content`` blocks: text, tool_use, ...; ``usage``); a streamed
  message repeats its id and usage on several lines. A synthetic message for a failed API call carries
  a top-level ``error`` (``authentication_failed``, ``rate_limit``, ...);
- ``user``: tool results, among them the refusals of the CLI's permission system or of a hook;
- ``result``: the verdict: ``subtype``, ``is_error``, ``result`` (the final text, or the CLI's error),
  ``api_error_status``, ``errors``, ``usage``, ``total_cost_usd``, and ``permission_denials``
  (``[{tool_name, tool_use_id, tool_input}]``): every tool call that was refused. The run still
  "succeeds" when writes were denied, so the denials travel in `AgentResult.permission_denials`.

Every line is validated against its model (`onloop.backends._schema`); one that does not match is
skipped and counted. The result's usage, cost and denials are validated on their own, so that garbage
in one of them costs only that field (the cost becomes unknown, usage falls back to the streamed
messages) and not the run's verdict.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import Field

from onloop.backends import ratelimits
from onloop.backends._adapters import short
from onloop.backends._cli import JsonLinesFeed
from onloop.backends._schema import Event, Tokens, money, parse
from onloop.backends.auth import AUTH_STATUSES, is_auth_failure
from onloop.backends.base import AgentEvent, AgentResult, AgentStatus, PermissionDenial
from onloop.clock import Clock, SystemClock
from onloop.usage import Cost, CostSource, Usage

DEFAULT_MAX_RETRIES = 2  # CLAUDE_CODE_MAX_RETRIES onloop passes (the CLI's default, 10, takes minutes)
AUTH_ERROR = "authentication_failed"
_DENIAL_TARGETS = ("file_path", "notebook_path", "path", "command", "url", "pattern")


class _Block(Event):
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    content: str | list[dict[str, Any]] | None = None  # a tool_result's text or parts
    is_error: bool | None = None


class _Message(Event):
    id: str | None = None
    content: list[_Block] | str = Field(default_factory=list)
    usage: Any = None  # validated on its own (`_Usage`)


class _System(Event):
    subtype: str | None = None
    session_id: str | None = None
    model: str | None = None
    attempt: int | None = None  # api_retry
    error_status: int | None = None
    error: str | None = None


class _Assistant(Event):
    message: _Message
    error: str | None = None


class _User(Event):
    message: _Message


class _Result(Event):
    subtype: str | None = None
    is_error: bool | None = None
    result: str | None = None
    session_id: str | None = None
    api_error_status: int | None = None
    errors: list[str] = Field(default_factory=list)
    usage: Any = None
    total_cost_usd: Any = None
    permission_denials: Any = None


class _Usage(Event):
    input_tokens: Tokens = 0
    output_tokens: Tokens = 0
    cache_read_input_tokens: Tokens = 0
    cache_creation_input_tokens: Tokens = 0

    def usage(self) -> Usage:
        cached, created = self.cache_read_input_tokens, self.cache_creation_input_tokens
        return Usage(input_tokens=self.input_tokens + cached + created, output_tokens=self.output_tokens,
                     cached_input_tokens=cached)


class _Denial(Event):
    tool_name: str
    tool_input: dict[str, Any] | None = None

    def denial(self) -> PermissionDenial:
        given = self.tool_input or {}
        target = next((given[k] for k in _DENIAL_TARGETS if isinstance(given.get(k), str)), "")
        return PermissionDenial(self.tool_name, short(target, 160))


class ClaudeStreamParser(JsonLinesFeed):
    """Parses Claude Code's stream-json lines (system, assistant, user, result); see the module docstring.

    `auth_retry_limit` is the number of retries the CLI was told to make (CLAUDE_CODE_MAX_RETRIES): a
    CLI that retries refused credentials more often than that is stopped (`abort_reason`).
    """

    def __init__(self, *, trust_cost: bool = True, clock: Clock | None = None,
                 auth_retry_limit: int = DEFAULT_MAX_RETRIES) -> None:
        self.trust_cost = trust_cost
        self.clock: Clock = clock or SystemClock()  # "try again in 5s" is relative to when it was read
        self.auth_retry_limit = auth_retry_limit
        self.session_id: str | None = None
        self.model: str | None = None
        self.events = 0
        self.malformed = 0
        self.result: _Result | None = None
        self.result_usage: Usage | None = None
        self.cost: Decimal | None = None
        self.denials: tuple[PermissionDenial, ...] = ()
        self.last_text = ""
        self.usage_seen: dict[str, Usage] = {}  # message id -> usage (streamed messages repeat it)
        self.auth_retries = 0  # api_retry events for refused credentials
        self.auth_error = False  # the CLI's own synthetic message said authentication_failed

    def abort_reason(self) -> str | None:
        if self.auth_retries > self.auth_retry_limit:
            return f"Claude Code retried refused credentials {self.auth_retries} times (HTTP 401/403)"
        return None

    def _events(self, obj: dict[str, Any]) -> list[AgentEvent]:
        kind = obj.get("type")
        if kind == "system":
            system = parse(_System, obj)
            return self._malformed() if system is None else [self._system(system, obj)]
        if kind == "assistant":
            assistant = parse(_Assistant, obj)
            return self._malformed() if assistant is None else self._assistant(assistant)
        if kind == "user":
            user = parse(_User, obj)
            return self._malformed() if user is None else _tool_results(user.message)
        if kind == "result":
            result = parse(_Result, obj)
            return self._malformed() if result is None else [self._result(result, obj)]
        return []

    def _malformed(self, count: int = 1) -> list[AgentEvent]:
        self.malformed += count
        return []

    def _system(self, system: _System, obj: dict[str, Any]) -> AgentEvent:
        if system.subtype == "api_retry":
            if system.error == AUTH_ERROR or system.error_status in AUTH_STATUSES:
                self.auth_retries += 1
            limited = system.error == "rate_limit" or system.error_status == 429
            return AgentEvent("rate_limit" if limited else "error",
                              f"API retry {system.attempt}: {system.error_status} {system.error}", obj)
        self.session_id = system.session_id or self.session_id
        self.model = system.model or self.model
        return AgentEvent("system", f"session {self.session_id} model {self.model}", obj)

    def _assistant(self, assistant: _Assistant) -> list[AgentEvent]:
        message = assistant.message
        self.auth_error = self.auth_error or assistant.error == AUTH_ERROR
        if message.usage is not None and message.id:
            usage = parse(_Usage, message.usage)
            if usage is None:
                self.malformed += 1
            else:
                self.usage_seen[message.id] = usage.usage()
        events = []
        for block in message.content if isinstance(message.content, list) else []:
            dumped = block.model_dump(exclude_none=True)
            if block.type == "text" and block.text:
                self.last_text = block.text
                events.append(AgentEvent("message", short(block.text), dumped))
            elif block.type == "tool_use":
                events.append(AgentEvent("tool_call", f"{block.name} {short(str(block.input or ''), 160)}", dumped))
        return events

    def _result(self, result: _Result, obj: dict[str, Any]) -> AgentEvent:
        self.result = result
        self.session_id = result.session_id or self.session_id
        if result.usage is not None:
            usage = parse(_Usage, result.usage)
            self.result_usage = usage.usage() if usage is not None else None
            self.malformed += int(usage is None)
        if result.total_cost_usd is not None:
            self.cost = money(result.total_cost_usd)
            self.malformed += int(self.cost is None)
        self.denials = self._denials(result.permission_denials)
        data = {k: v for k, v in obj.items() if k != "modelUsage"}
        return AgentEvent("result", short(result.result or ""), data)

    def _denials(self, raw: Any) -> tuple[PermissionDenial, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.malformed += 1
            return ()
        parsed = [parse(_Denial, item) for item in raw]
        self.malformed += sum(1 for item in parsed if item is None)
        return tuple(item.denial() for item in parsed if item is not None)

    def finish(self, *, exit_code: int | None, timed_out: bool, log_path: Path | None) -> AgentResult:
        usage = self.result_usage
        if usage is None:  # cut off before the result (or its usage was garbage): what the messages said
            usage = sum(self.usage_seen.values(), Usage())
        common: dict[str, Any] = {
            "events": self.events, "usage": usage, "session_id": self.session_id, "exit_code": exit_code,
            "raw_log_path": log_path, "model": self.model, "malformed_events": self.malformed,
            "permission_denials": self.denials,
        }
        if timed_out:
            return AgentResult(AgentStatus.TIMEOUT, self.last_text, error="agent timed out", **common)
        aborted = self.abort_reason()
        if aborted is not None:
            return AgentResult(AgentStatus.AUTH_FAILED, self.last_text, error=aborted, **common)
        if self.result is None:
            skipped = f" ({self.malformed} malformed event(s) skipped)" if self.malformed else ""
            return AgentResult(AgentStatus.CRASHED, self.last_text, error="no result event" + skipped, **common)
        return self._verdict(self.result, exit_code, common)

    def _verdict(self, result: _Result, exit_code: int | None, common: dict[str, Any]) -> AgentResult:
        text = result.result or self.last_text
        cost = self._cost()
        if not result.is_error and exit_code in (0, None):
            return AgentResult(AgentStatus.OK, text, cost=cost, **common)
        # Only the CLI's own words (the result text of an error result, its `errors`) can say why it
        # failed: the agent's last message may well talk about rate limits, "429" or "401" while it
        # works on exactly that code.
        own = (result.result or "") if result.is_error else ""
        cli_text = " ".join([own, *result.errors]).strip()
        error = (cli_text or text)[:300]
        if result.subtype == "error_max_turns":
            return AgentResult(AgentStatus.MAX_TURNS, text, cost=cost, error=error, **common)
        if self.auth_error or result.api_error_status in AUTH_STATUSES or is_auth_failure(cli_text):
            return AgentResult(AgentStatus.AUTH_FAILED, text, cost=cost, error=error, **common)
        hit = ratelimits.detect(cli_text, self.clock.now())
        if result.api_error_status == 429 or hit is not None:
            return AgentResult(AgentStatus.RATE_LIMITED, text, cost=cost, error=error,
                               rate_limit_reset=hit.reset if hit else None, **common)
        status = AgentStatus.DENIED if self.denials else AgentStatus.FAILED
        return AgentResult(status, text, cost=cost, error=error, **common)

    def _cost(self) -> Cost:
        if self.cost is None or not self.trust_cost:
            return Cost.unknown()
        return Cost(self.cost, CostSource.REPORTED)


def _tool_results(message: _Message) -> list[AgentEvent]:
    blocks = message.content if isinstance(message.content, list) else []
    return [AgentEvent("tool_result", short(_tool_result_text(block)), block.model_dump(exclude_none=True))
            for block in blocks if block.type == "tool_result"]


def _tool_result_text(block: _Block) -> str:
    if isinstance(block.content, list):
        return " ".join(str(part.get("text", "")) for part in block.content)
    return block.content or ""
