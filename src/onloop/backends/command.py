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
`model`'s list price, else unknown.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from onloop.backends import ratelimits
from onloop.backends._adapters import money, price, short
from onloop.backends._cli import (
    agent_env,
    json_line,
    pass_secret,
    replay_log,
    resolve_command,
    run_cli,
    warn_missing_capabilities,
)
from onloop.backends.base import AgentEvent, AgentRequest, AgentResult, AgentStatus, BackendSpec, Capabilities
from onloop.backends.claude_code import parse_options
from onloop.clock import Clock, SystemClock
from onloop.models.config import Prices
from onloop.usage import Cost, Usage

TEXT_CAPABILITIES = Capabilities()
JSONL_CAPABILITIES = Capabilities(structured_events=True, token_usage=True, cost=True)
_VERDICTS = {s.value: s for s in (AgentStatus.OK, AgentStatus.FAILED, AgentStatus.MAX_TURNS, AgentStatus.DENIED,
                                  AgentStatus.RATE_LIMITED)}


class CommandOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] = Field(min_length=1, description="the agent's argv; it gets the prompt on stdin")
    output: Literal["text", "jsonl"] = Field("text", description="what it prints: plain text or JSON lines")
    model: str | None = Field(None, description="the model it uses, to price its tokens")
    api_key_env: str | None = Field(None, description="environment variable to pass through (a secret)")
    env: dict[str, str] = Field(default_factory=dict, description="more environment variables (not secrets)")
    prices: Prices | None = Field(None, description="USD per million tokens")


class CommandBackend:
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
        return run_cli(request, self.argv(request), self.env(request), self.parser(), stdin=request.prompt.encode())

    def parse_log(self, log_path: Path) -> AgentResult:
        return replay_log(self.parser(), log_path)


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
        self.usage = Usage()
        self.cost: Decimal | None = None
        self.last_message = ""
        self.last_error: str | None = None
        self.result: dict[str, Any] | None = None
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

    def _events(self, obj: dict[str, Any]) -> list[AgentEvent]:
        kind = obj.get("type")
        if kind == "message":
            self.last_message = str(obj.get("text", ""))
            return [AgentEvent("message", short(self.last_message), obj)]
        if kind == "tool_call":
            return [AgentEvent("tool_call", f"{obj.get('name', '?')} {short(str(obj.get('input', '')), 160)}", obj)]
        if kind == "usage":
            return [self._usage(obj)]
        if kind == "error":
            self.last_error = str(obj.get("message", ""))
            limited = ratelimits.is_rate_limit(self.last_error)
            return [AgentEvent("rate_limit" if limited else "error", short(self.last_error), obj)]
        if kind == "result":
            self.result = obj
            return [AgentEvent("result", short(str(obj.get("text", ""))), obj)]
        return []

    def _usage(self, obj: dict[str, Any]) -> AgentEvent:
        usage = Usage(int(obj.get("input_tokens") or 0), int(obj.get("output_tokens") or 0),
                      int(obj.get("cached_input_tokens") or 0))
        self.usage += usage
        amount = money(obj["cost_usd"]) if obj.get("cost_usd") is not None else None
        if amount is not None:
            self.cost = (self.cost or Decimal("0")) + amount
        return AgentEvent("usage", f"{usage.input_tokens} in, {usage.output_tokens} out", obj)

    def final_message(self) -> str:
        if self.result is not None and self.result.get("text"):
            return str(self.result["text"])
        if self.jsonl:
            return self.last_message
        return self.tail[-1] if self.tail else ""

    def finish(self, *, exit_code: int | None, timed_out: bool, log_path: Path | None) -> AgentResult:
        result = self.result or {}
        model = str(result["model"]) if result.get("model") else None
        common: dict[str, Any] = {
            "events": self.events, "usage": self.usage, "cost": self.price(self.usage, self.cost, model),
            "session_id": str(result["session_id"]) if result.get("session_id") else None,
            "exit_code": exit_code, "raw_log_path": log_path, "model": model,
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
        verdict = _VERDICTS.get(str((self.result or {}).get("status", "")))
        if verdict is not None and not (verdict is AgentStatus.OK and exit_code not in (0, None)):
            return verdict, None if verdict is AgentStatus.OK else tail[:300]
        if exit_code is not None and exit_code > 0:
            if ratelimits.is_rate_limit(tail):
                return AgentStatus.RATE_LIMITED, tail[:300]
            return AgentStatus.FAILED, f"agent exited with status {exit_code}: {short(tail, 250)}"
        if exit_code is None:
            return AgentStatus.CRASHED, "no exit status (replayed log without a result)"
        return AgentStatus.OK, None
