"""opencode (`opencode run --format json -m <provider>/<model> --dir <worktree>`), the prompt on stdin.

opencode reads its configuration from `$XDG_CONFIG_HOME/opencode/opencode.json` and, by default, from
the project too, so a repository could grant itself permissions. onloop gives it an onloop-owned home
per backend (option `config_home`, default `<ONLOOP_HOME>/opencode-home/<backend name>`, with the four
XDG dirs under it: opencode caches npm plugins there on its first run, so the home is kept between
runs), writes `opencode.json` there before every run (the provider for a custom `base_url`, the
permissions: edit and bash allowed, webfetch denied; no autoupdate, no sharing), and sets
`OPENCODE_DISABLE_PROJECT_CONFIG=1`.

Output (transcript `tests/data/agent-cli/opencode-success.jsonl`): per model step a ``step_start``,
``text`` and ``tool_use`` parts (a tool part arrives once, finished, with its input and output), and a
``step_finish`` with ``tokens{input,output,reasoning,cache{read,write}}`` and ``cost``. The run is done
when a step finishes for a reason other than ``tool-calls``. Failures arrive as an ``error`` event
(``error.name``, ``error.data.message``, ``error.data.statusCode``); a 429 there is a rate limit.

Tokens follow onloop's convention (`onloop.usage`): input counts cache reads and writes, output counts
reasoning. The cost is opencode's own figure (REPORTED), except behind a custom `base_url`, where
opencode prices a local model from whatever the config says: UNKNOWN there unless `prices` is set.
A cost that is not a finite number >= 0 makes the run's cost UNKNOWN: a sum with a hole is no figure.

Every event is validated against a model of the fields read here (`onloop.backends._schema`): one that
does not match is skipped and counted in `AgentResult.malformed_events`. A 401 in an ``error`` event
is AUTH_FAILED, with the variable to fix.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from onloop.backends import ratelimits
from onloop.backends._adapters import backend_home, failure_result, pass_api_key, price, short, write_atomic
from onloop.backends._cli import agent_env, json_line, replay_log, resolve_command, run_cli
from onloop.backends._schema import Event, Tokens, money, parse
from onloop.backends.auth import KeyHint, auth_failed_message
from onloop.backends.base import AgentEvent, AgentRequest, AgentResult, AgentStatus, BackendSpec, Capabilities
from onloop.backends.claude_code import parse_options
from onloop.clock import Clock, SystemClock
from onloop.errors import ConfigError
from onloop.models.config import Prices
from onloop.policy.agent_cli import opencode_permissions
from onloop.policy.model import Policy
from onloop.usage import Cost, Usage

CAPABILITIES = Capabilities(structured_events=True, token_usage=True, cost=True, resume=False)
PROVIDER_ID = "onloop"
LOCAL_KEY_VAR = "ONLOOP_OPENCODE_API_KEY"
_KNOWN_TYPES = frozenset({"text", "tool_use", "step_start", "step_finish", "error"})
_XDG = {"XDG_CONFIG_HOME": "config", "XDG_DATA_HOME": "data", "XDG_CACHE_HOME": "cache", "XDG_STATE_HOME": "state"}


class OpencodeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] | None = Field(None, description="argv prefix instead of `opencode` on PATH")
    model: str | None = Field(None, description="`provider/model`, or the bare model name with a base_url")
    base_url: str | None = Field(None, description="an OpenAI-compatible (chat completions) endpoint")
    api_key_env: str | None = Field(None, description="environment variable holding the API key to pass")
    agent: str | None = Field(None, description="--agent")
    config_home: str | None = Field(
        None, description="home of its XDG dirs (default <ONLOOP_HOME>/opencode-home/<name>)"
    )
    permission: dict[str, Any] = Field(
        default_factory=dict,
        description="more of opencode's permission block; edit, bash and webfetch always come from the policy",
    )
    prices: Prices | None = Field(None, description="USD per million tokens, to price a local model")
    extra_args: list[str] = Field(default_factory=list, description="more `opencode run` arguments, as given")


class OpencodeBackend:
    capabilities = CAPABILITIES
    kind = "opencode"

    def __init__(self, name: str, options: OpencodeOptions, clock: Clock | None = None,
                 policy: Policy | None = None) -> None:
        self.name = name
        self.options = options
        self.clock = clock or SystemClock()
        self.policy = policy or Policy()
        self.home = backend_home("opencode-home", name, options.config_home)

    def model_flag(self) -> str | None:
        model = self.options.model
        if model and self.options.base_url:
            return f"{PROVIDER_ID}/{model}"
        return model

    def argv(self, request: AgentRequest) -> list[str]:
        o = self.options
        argv = [*resolve_command(o.command, "opencode"), "run", "--format", "json"]
        model = self.model_flag()
        if model:
            argv += ["-m", model]
        argv += ["--dir", str(request.worktree)]
        if o.agent:
            argv += ["--agent", o.agent]
        return argv + list(o.extra_args)

    def env(self, request: AgentRequest) -> dict[str, str]:
        config = self.write_config()
        extra = {var: str(self.home / sub) for var, sub in _XDG.items()}
        extra.update({"OPENCODE_CONFIG": str(config), "OPENCODE_DISABLE_PROJECT_CONFIG": "1",
                      "OPENCODE_DISABLE_AUTOUPDATE": "1"})
        env = agent_env(request, extra)
        pass_api_key(env, self.options.api_key_env, base_url=self.options.base_url, local_key_var=LOCAL_KEY_VAR,
                     custom_target=LOCAL_KEY_VAR)
        return env

    def write_config(self) -> Path:
        """(Re)write `opencode.json` atomically; returns its path."""
        config = render_config(self.name, self.options, self.policy)
        return write_atomic(self.home / "config" / "opencode" / "opencode.json", json.dumps(config, indent=2))

    def parser(self) -> OpencodeStreamParser:
        o = self.options
        return OpencodeStreamParser(
            now=self.clock.now,
            price=lambda usage, reported: price(
                usage, model=o.model, base_url=o.base_url, prices=o.prices, reported=reported
            ),
            model=self.model_flag(),
        )

    def run(self, request: AgentRequest) -> AgentResult:
        env = self.env(request)
        return self.explain(run_cli(request, self.argv(request), env, self.parser(), stdin=request.prompt.encode(),
                                    writable=(self.home,)))

    def parse_log(self, log_path: Path) -> AgentResult:
        return self.explain(replay_log(self.parser(), log_path))

    def explain(self, result: AgentResult) -> AgentResult:
        """A refused key becomes a message that names this backend and the variable to fix."""
        if result.status is not AgentStatus.AUTH_FAILED:
            return result
        passed = LOCAL_KEY_VAR if self.options.base_url else None
        hint = KeyHint(self.name, self.kind, self.options.api_key_env, passed_as=passed, suggested="OPENAI_API_KEY")
        return replace(result, error=auth_failed_message(hint, result.error or ""))


def create(spec: BackendSpec) -> OpencodeBackend:
    options: OpencodeOptions = parse_options(spec, OpencodeOptions)
    if options.model and not options.base_url and "/" not in options.model:
        raise ConfigError("needs the form provider/model (or set base_url)", key=f"backends.{spec.name}.model")
    return OpencodeBackend(spec.name, options, policy=spec.policy)


def render_config(name: str, o: OpencodeOptions, policy: Policy | None = None) -> dict[str, Any]:
    """The `opencode.json` onloop gives opencode (the API key is read from the environment by opencode)."""
    config: dict[str, Any] = {
        "$schema": "https://opencode.ai/config.json",
        # bash only for the policy's named actions; the policy wins over the option.
        "permission": {**o.permission, **opencode_permissions(policy or Policy())},
        "autoupdate": False,
        "share": "disabled",
    }
    if o.base_url:
        models = {o.model: {"name": o.model}} if o.model else {}
        config["provider"] = {PROVIDER_ID: {
            "npm": "@ai-sdk/openai-compatible",
            "name": f"onloop {name}",
            "options": {"baseURL": o.base_url, "apiKey": f"{{env:{LOCAL_KEY_VAR}}}"},
            "models": models,
        }}
    return config


class _Cache(Event):
    read: Tokens = 0
    write: Tokens = 0


class _StepTokens(Event):
    input: Tokens = 0
    output: Tokens = 0
    reasoning: Tokens = 0
    cache: _Cache | None = None


class _ToolState(Event):
    status: str | None = None
    input: Any = None
    output: Any = None
    error: Any = None
    metadata: dict[str, Any] | None = None


class _Part(Event):
    type: str | None = None
    text: str | None = None
    tool: str | None = None
    state: _ToolState | None = None
    reason: str | None = None
    tokens: Any = None  # validated on its own (`_StepTokens`)
    cost: Any = None  # validated on its own (`money`)


class _ErrorData(Event):
    message: str | None = None
    statusCode: int | None = None


class _ErrorInfo(Event):
    name: str | None = None
    data: _ErrorData | None = None


class _Line(Event):
    type: str
    sessionID: str | None = None
    part: _Part | None = None
    error: _ErrorInfo | str | None = None


class OpencodeStreamParser:
    """Parses `opencode run --format json` lines: step_start, text, tool_use, step_finish, error."""

    def __init__(self, *, now: Callable[[], datetime], price: Callable[[Usage, Decimal | None], Cost],
                 model: str | None = None) -> None:
        self.now = now
        self.price = price
        self.model = model
        self.session_id: str | None = None
        self.events = 0
        self.malformed = 0
        self.usage = Usage()
        self.cost = Decimal("0")
        self.cost_seen = False
        self.cost_malformed = False
        self.last_text = ""
        self.finished = False  # a step ended for a reason other than tool calls
        self.error: str | None = None

    def feed(self, line: str) -> list[AgentEvent]:
        obj = json_line(line)
        if obj is None or str(obj.get("type")) not in _KNOWN_TYPES:
            return []  # reasoning and anything newer: kept in the raw log only
        event = parse(_Line, obj)
        if event is None:
            self.malformed += 1
            return []
        self.session_id = event.sessionID or self.session_id
        events = self._events(event, obj)
        self.events += len(events)
        return events

    def abort_reason(self) -> str | None:
        return None  # opencode ends by itself on an error event

    def _events(self, event: _Line, obj: dict[str, Any]) -> list[AgentEvent]:
        part = event.part or _Part()
        given = obj.get("part")
        raw: dict[str, Any] = given if isinstance(given, dict) else {}
        if event.type == "text" and part.text:
            self.last_text = part.text
            return [AgentEvent("message", short(self.last_text), raw)]
        if event.type == "tool_use":
            return _tool_events(part, raw)
        if event.type == "step_start":
            self.finished = False
            return []
        if event.type == "step_finish":
            return [self._step_finish(part, raw)]
        if event.type == "error":
            self.error = _error_text(event.error)
            limited = ratelimits.is_rate_limit(self.error)
            return [AgentEvent("rate_limit" if limited else "error", short(self.error), obj)]
        return []

    def _step_finish(self, part: _Part, raw: dict[str, Any]) -> AgentEvent:
        tokens = parse(_StepTokens, part.tokens if part.tokens is not None else {})
        if tokens is None:
            self.malformed += 1
            tokens = _StepTokens()
        cache = tokens.cache or _Cache()
        usage = Usage(
            input_tokens=tokens.input + cache.read + cache.write,
            output_tokens=tokens.output + tokens.reasoning,
            cached_input_tokens=cache.read,
        )
        self.usage += usage
        if part.cost is not None:
            amount = money(part.cost)
            if amount is None:
                self.malformed += 1
                self.cost_malformed = True
            else:
                self.cost += amount
                self.cost_seen = True
        self.finished = part.reason != "tool-calls"
        return AgentEvent("usage", f"{usage.input_tokens} in, {usage.output_tokens} out", raw)

    def finish(self, *, exit_code: int | None, timed_out: bool, log_path: Path | None) -> AgentResult:
        cost = Cost.unknown() if self.cost_malformed else self.price(self.usage, self.cost if self.cost_seen else None)
        common: dict[str, Any] = {
            "events": self.events, "usage": self.usage, "cost": cost, "session_id": self.session_id,
            "exit_code": exit_code, "raw_log_path": log_path, "model": self.model, "malformed_events": self.malformed,
        }
        text = self.last_text
        if timed_out:
            return AgentResult(AgentStatus.TIMEOUT, text, error="agent timed out", **common)
        if self.error is not None:
            return failure_result(self.error, text, self.now(), common)
        if exit_code is not None and exit_code < 0:
            return AgentResult(AgentStatus.CRASHED, text, error=f"opencode killed by signal {-exit_code}", **common)
        if exit_code is not None and exit_code > 0:
            return AgentResult(AgentStatus.FAILED, text, error=f"opencode exited with status {exit_code}", **common)
        if not self.finished:
            return AgentResult(AgentStatus.CRASHED, text, error="no final step_finish", **common)
        return AgentResult(AgentStatus.OK, text, **common)


def _tool_events(part: _Part, raw: dict[str, Any]) -> list[AgentEvent]:
    state = part.state or _ToolState()
    name = part.tool or "?"
    given = json.dumps(state.input if state.input is not None else {}, default=str)
    call = AgentEvent("tool_call", f"{name} {short(given, 160)}", raw)
    if state.status == "error":
        return [call, AgentEvent("tool_result", f"error: {short(str(state.error or ''), 160)}", raw)]
    metadata = state.metadata or {}
    prefix = f"exit {metadata['exit']}: " if "exit" in metadata else ""
    return [call, AgentEvent("tool_result", prefix + short(str(state.output or ""), 160), raw)]


def _error_text(error: _ErrorInfo | str | None) -> str:
    if not isinstance(error, _ErrorInfo):
        return error or "opencode reported an error"
    data = error.data or _ErrorData()
    text = f"{error.name or 'Error'}: {data.message or ''}".strip()
    if data.statusCode is not None:
        text += f" (status {data.statusCode})"
    return text
