"""The generic `command` backend: any executable as the agent, the prompt on its stdin.

For agents onloop has no adapter for (goose, a home-made script, a wrapper around an API). Configure
the argv in `command`; onloop runs it in the worktree under the sandbox, writes the prompt to stdin
and closes it. The status comes from the exit code: 0 is OK, a signal is CRASHED, anything else is
FAILED, or RATE_LIMITED when the last lines printed say so (see `onloop.backends.ratelimits`).

`output = "text"` (the default): plain text; the final message is the last non-empty line. No events,
no usage: the backend says so once, at creation.

`output = "jsonl"`: one JSON object per line, other lines ignored. The schema, all fields optional
except `type`:

    {"type": "message",   "text": "I fixed add()."}
    {"type": "tool_call", "name": "edit", "input": {"path": "calc.py"}}
    {"type": "usage",     "input_tokens": 1200, "output_tokens": 300, "cached_input_tokens": 0,
                          "cost_usd": "0.0125"}                 # one per model call; summed
    {"type": "error",     "message": "rate limit exceeded, try again in 30 seconds"}
    {"type": "result",    "text": "Done.", "status": "ok", "session_id": "abc", "model": "gpt-4o"}

The final message is the result's `text`, else the last message. A result `status` (one of onloop's
statuses: ok, failed, max_turns, denied, rate_limited) is taken as the agent's own verdict, except
that a non-zero exit is never OK. Dollars: the sum of `cost_usd` (REPORTED), else `prices`, else the
`model`'s list price, else unknown; one `cost_usd` that is not a finite number >= 0 makes it unknown.
A line whose fields do not have these types is skipped and counted (`AgentResult.malformed_events`);
`status = "auth_failed"` (or an error saying the key was refused) stops the run at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from onloop.backends import ratelimits
from onloop.backends._adapters import price, short
from onloop.backends._cli import (
    agent_env,
    json_line,
    pass_secret,
    replay_log,
    resolve_command,
    run_cli,
    warn_missing_capabilities,
)
from onloop.backends._schema import Event, Tokens, money, parse
from onloop.backends.auth import KeyHint, auth_failed_message, is_auth_failure
from onloop.backends.base import AgentEvent, AgentRequest, AgentResult, AgentStatus, BackendSpec, Capabilities
from onloop.backends.claude_code import parse_options
from onloop.clock import Clock, SystemClock
from onloop.models.config import Prices
from onloop.usage import Cost, Usage

TEXT_CAPABILITIES = Capabilities()
JSONL_CAPABILITIES = Capabilities(structured_events=True, token_usage=True, cost=True)
_VERDICTS = {s.value: s for s in (AgentStatus.OK, AgentStatus.FAILED, AgentStatus.MAX_TURNS, AgentStatus.DENIED,
                                  AgentStatus.RATE_LIMITED, AgentStatus.AUTH_FAILED)}


class _Message(Event):
    text: str = ""


class _ToolCall(Event):
    name: str = "?"
    input: Any = None


class _Usage(Event):
    input_tokens: Tokens = 0
    output_tokens: Tokens = 0
    cached_input_tokens: Tokens = 0
    cost_usd: Any = None  # validated on its own (`money`)


class _Error(Event):
    message: str = ""


class _Result(Event):
    text: str | None = None
    status: str | None = None
    session_id: str | None = None
    model: str | None = None


_SCHEMA: dict[str, type[Event]] = {"message": _Message, "tool_call": _ToolCall, "usage": _Usage, "error": _Error,
                                   "result": _Result}


class CommandOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] = Field(min_length=1, description="the agent's argv; it gets the prompt on stdin")
    output: Literal["text", "jsonl"] = Field("text", description="what it prints: plain text or JSON lines")
    model: str | None = Field(None, description="the model it uses, to price its tokens")
    api_key_env: str | None = Field(None, description="environment variable to pass through (a secret)")
    env: dict[str, str] = Field(default_factory=dict, description="more environment variables (not secrets)")
    prices: Prices | None = Field(None, description="USD per million tokens")


class CommandBackend:
    kind = "command"

    def __init__(self, name: str, options: CommandOptions, clock: Clock | None = None) -> None:
        self.name = name
        self.options = options
        self.clock = clock or SystemClock()
        self.capabilities = JSONL_CAPABILITIES if options.output == "jsonl" else TEXT_CAPABILITIES

    def argv(self, request: AgentRequest) -> list[str]:
        return resolve_command(self.options.command, self.options.command[0])

    def env(self, request: AgentRequest) -> dict[str, str]:
        env = agent_env(request, self.options.env)
        pass_secret(env, self.options.api_key_env)
        return env

    def parser(self) -> CommandOutputParser:
        o = self.options
        return CommandOutputParser(
            jsonl=o.output == "jsonl",
            now=self.clock.now,
            price=lambda usage, reported, model: price(
                usage, model=model or o.model, base_url=None, prices=o.prices, reported=reported
            ),
        )

    def run(self, request: AgentRequest) -> AgentResult:
        return self.explain(run_cli(request, self.argv(request), self.env(request), self.parser(),
                                    stdin=request.prompt.encode()))

    def parse_log(self, log_path: Path) -> AgentResult:
        return self.explain(replay_log(self.parser(), log_path))

    def explain(self, result: AgentResult) -> AgentResult:
        """A refused key becomes a message that names this backend and the variable to fix."""
        if result.status is not AgentStatus.AUTH_FAILED:
            return result
        hint = KeyHint(self.name, self.kind, self.options.api_key_env, passed_as=None,
                       suggested="the variable holding its key")
        return replace(result, error=auth_failed_message(hint, result.error or ""))


def create(spec: BackendSpec) -> CommandBackend:
    backend = CommandBackend(spec.name, parse_options(spec, CommandOptions))
    warn_missing_capabilities(spec.name, backend.capabilities)
    return backend


class CommandOutputParser:
    """Reads the text or JSON lines of a `command` agent (the schema is in the module docstring)."""

    def __init__(self, *, jsonl: bool, now: Callable[[], datetime],
                 price: Callable[[Usage, Decimal | None, str | None], Cost]) -> None:
        self.jsonl = jsonl
        self.now = now
        self.price = price
        self.events = 0
        self.malformed = 0
        self.usage = Usage()
        self.cost: Decimal | None = None
        self.cost_malformed = False
        self.last_message = ""
        self.last_error: str | None = None
        self.result: _Result | None = None
        self.tail: deque[str] = deque(maxlen=20)  # the last non-empty lines, for the message and limits

    def feed(self, line: str) -> list[AgentEvent]:
        if line.strip():
            self.tail.append(line.strip())
        if not self.jsonl:
            return []
        obj = json_line(line)
        events = self._events(obj) if obj is not None else []
        self.events += len(events)
        return events

    def abort_reason(self) -> str | None:
        return None

    def _events(self, obj: dict[str, Any]) -> list[AgentEvent]:
        model = _SCHEMA.get(str(obj.get("type")))
        if model is None:
            return []
        event = parse(model, obj)
        if event is None:
            self.malformed += 1
            return []
        if isinstance(event, _Message):
            self.last_message = event.text
            return [AgentEvent("message", short(event.text), obj)]
        if isinstance(event, _ToolCall):
            return [AgentEvent("tool_call", f"{event.name} {short(str(event.input or ''), 160)}", obj)]
        if isinstance(event, _Usage):
            return [self._usage(event, obj)]
        if isinstance(event, _Error):
            self.last_error = event.message
            limited = ratelimits.is_rate_limit(event.message)
            return [AgentEvent("rate_limit" if limited else "error", short(event.message), obj)]
        assert isinstance(event, _Result)
        self.result = event
        return [AgentEvent("result", short(event.text or ""), obj)]

    def _usage(self, event: _Usage, obj: dict[str, Any]) -> AgentEvent:
        usage = Usage(event.input_tokens, event.output_tokens, event.cached_input_tokens)
        self.usage += usage
        if event.cost_usd is not None:
            amount = money(event.cost_usd)
            if amount is None:
                self.malformed += 1
                self.cost_malformed = True
            else:
                self.cost = (self.cost or Decimal("0")) + amount
        return AgentEvent("usage", f"{usage.input_tokens} in, {usage.output_tokens} out", obj)

    def final_message(self) -> str:
        if self.result is not None and self.result.text:
            return self.result.text
        if self.jsonl:
            return self.last_message
        return self.tail[-1] if self.tail else ""

    def finish(self, *, exit_code: int | None, timed_out: bool, log_path: Path | None) -> AgentResult:
        result = self.result or _Result()
        cost = Cost.unknown() if self.cost_malformed else self.price(self.usage, self.cost, result.model)
        common: dict[str, Any] = {
            "events": self.events, "usage": self.usage, "cost": cost, "session_id": result.session_id or None,
            "exit_code": exit_code, "raw_log_path": log_path, "model": result.model or None,
            "malformed_events": self.malformed,
        }
        text = self.final_message()
        status, error = self._status(exit_code, timed_out)
        reset = None
        if status is AgentStatus.RATE_LIMITED:
            hit = ratelimits.detect(error or "rate limited", self.now())
            reset = hit.reset if hit is not None else None
        return AgentResult(status, text, error=error, rate_limit_reset=reset, **common)

    def _status(self, exit_code: int | None, timed_out: bool) -> tuple[AgentStatus, str | None]:
        if timed_out:
            return AgentStatus.TIMEOUT, "agent timed out"
        if exit_code is not None and exit_code < 0:
            return AgentStatus.CRASHED, f"agent killed by signal {-exit_code}"
        tail = self.last_error or "\n".join(list(self.tail)[-5:])
        verdict = _VERDICTS.get(str((self.result or _Result()).status or ""))
        if verdict is not None and not (verdict is AgentStatus.OK and exit_code not in (0, None)):
            return verdict, None if verdict is AgentStatus.OK else tail[:300]
        if exit_code is not None and exit_code > 0:
            if self.last_error is not None and is_auth_failure(self.last_error):
                return AgentStatus.AUTH_FAILED, self.last_error[:300]
            if ratelimits.is_rate_limit(tail):
                return AgentStatus.RATE_LIMITED, tail[:300]
            return AgentStatus.FAILED, f"agent exited with status {exit_code}: {short(tail, 250)}"
        if exit_code is None:
            return AgentStatus.CRASHED, "no exit status (replayed log without a result)"
        return AgentStatus.OK, None
