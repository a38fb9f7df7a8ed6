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
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from onloop.backends import ratelimits
from onloop.backends._adapters import backend_home, failure_result, money, pass_api_key, price, short, write_atomic
from onloop.backends._cli import agent_env, json_line, replay_log, resolve_command, run_cli
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
        return run_cli(request, self.argv(request), env, self.parser(), stdin=request.prompt.encode(),
                       writable=(self.home,))

    def parse_log(self, log_path: Path) -> AgentResult:
        return replay_log(self.parser(), log_path)


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


class OpencodeStreamParser:
    """Parses `opencode run --format json` lines: step_start, text, tool_use, step_finish, error."""

    def __init__(self, *, now: Callable[[], datetime], price: Callable[[Usage, Decimal | None], Cost],
                 model: str | None = None) -> None:
        self.now = now
        self.price = price
        self.model = model
        self.session_id: str | None = None
        self.events = 0
        self.usage = Usage()
        self.cost = Decimal("0")
        self.cost_seen = False
        self.last_text = ""
        self.finished = False  # a step ended for a reason other than tool calls
        self.error: str | None = None

    def feed(self, line: str) -> list[AgentEvent]:
        obj = json_line(line)
        if obj is None:
            return []
        self.session_id = str(obj.get("sessionID") or "") or self.session_id
        events = self._events(obj)
        self.events += len(events)
        return events

    def _events(self, obj: dict[str, Any]) -> list[AgentEvent]:
        kind = obj.get("type")
        part = _dict(obj.get("part"))
        if kind == "text" and part.get("text"):
            self.last_text = str(part["text"])
            return [AgentEvent("message", short(self.last_text), part)]
        if kind == "tool_use":
            return _tool_events(part)
        if kind == "step_start":
            self.finished = False
            return []
        if kind == "step_finish":
            return [self._step_finish(part)]
        if kind == "error":
            self.error = _error_text(obj.get("error"))
            limited = ratelimits.is_rate_limit(self.error)
            return [AgentEvent("rate_limit" if limited else "error", short(self.error), obj)]
        return []  # reasoning and anything newer

    def _step_finish(self, part: dict[str, Any]) -> AgentEvent:
        tokens = _dict(part.get("tokens"))
        cache = _dict(tokens.get("cache"))
        read, write = int(cache.get("read") or 0), int(cache.get("write") or 0)
        usage = Usage(
            input_tokens=int(tokens.get("input") or 0) + read + write,
            output_tokens=int(tokens.get("output") or 0) + int(tokens.get("reasoning") or 0),
            cached_input_tokens=read,
        )
        self.usage += usage
        amount = money(part["cost"]) if part.get("cost") is not None else None
        if amount is not None:
            self.cost += amount
            self.cost_seen = True
        self.finished = part.get("reason") != "tool-calls"
        return AgentEvent("usage", f"{usage.input_tokens} in, {usage.output_tokens} out", part)

    def finish(self, *, exit_code: int | None, timed_out: bool, log_path: Path | None) -> AgentResult:
        common: dict[str, Any] = {
            "events": self.events, "usage": self.usage,
            "cost": self.price(self.usage, self.cost if self.cost_seen else None),
            "session_id": self.session_id, "exit_code": exit_code, "raw_log_path": log_path, "model": self.model,
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


def _tool_events(part: dict[str, Any]) -> list[AgentEvent]:
    state = _dict(part.get("state"))
    name = str(part.get("tool", "?"))
    call = AgentEvent("tool_call", f"{name} {short(json.dumps(state.get('input', {})), 160)}", part)
    if state.get("status") == "error":
        return [call, AgentEvent("tool_result", f"error: {short(str(state.get('error', '')), 160)}", part)]
    metadata = _dict(state.get("metadata"))
    prefix = f"exit {metadata['exit']}: " if "exit" in metadata else ""
    return [call, AgentEvent("tool_result", prefix + short(str(state.get("output", "")), 160), part)]


def _error_text(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error or "opencode reported an error")
    data = _dict(error.get("data"))
    text = f"{error.get('name', 'Error')}: {data.get('message', '')}".strip()
    if data.get("statusCode") is not None:
        text += f" (status {data['statusCode']})"
    return text


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
