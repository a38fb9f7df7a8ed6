"""Claude Code (`claude -p --output-format stream-json --verbose`), prompt on stdin.

Traps handled (see shared/research/agent-clis.md, all observed on a real binary):
- success is `exit 0 and not is_error`: an unreachable API exits 1 with `subtype: success` and
  `is_error: true`, so `subtype` alone lies;
- `total_cost_usd` is computed by the CLI from its own price table, even for a local model behind a
  custom base URL; with a custom `base_url` onloop records the tokens and marks the cost unknown;
- a repository's own `.claude/settings.json` hooks run in `-p` mode unless `--setting-sources user` is
  given: it always is, with a per-run `CLAUDE_CONFIG_DIR`;
- usage limits come back as an error result ("...usage limit reached|<epoch>" or an API 429): that is a
  rate limit with a reset time, not a failure.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from onloop.backends import ratelimits
from onloop.backends._cli import agent_env, json_line, pass_secret, replay_log, resolve_command, run_cli
from onloop.backends.base import (
    AgentEvent,
    AgentRequest,
    AgentResult,
    AgentStatus,
    BackendSpec,
    Capabilities,
)
from onloop.clock import Clock, SystemClock
from onloop.errors import ConfigError
from onloop.policy.agent_cli import ClaudeSetup, check_args, inner_sandbox_on, prepare_claude
from onloop.policy.model import Policy
from onloop.usage import Cost, CostSource, Usage

CAPABILITIES = Capabilities(
    structured_events=True, token_usage=True, cost=True, resume=True, permission_control=True
)


class ClaudeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] | None = Field(None, description="argv prefix instead of `claude` on PATH")
    model: str | None = Field(None, description="--model")
    max_turns: int = Field(50, ge=1, description="--max-turns")
    base_url: str | None = Field(None, description="ANTHROPIC_BASE_URL (a local or proxy endpoint)")
    api_key_env: str | None = Field(None, description="environment variable holding the API key to pass")
    allowed_tools: list[str] = Field(
        default_factory=list, description="--allowedTools beyond what the policy allows (rarely needed)"
    )
    extra_args: list[str] = Field(default_factory=list, description="more arguments, appended as given")
    inner_sandbox: Literal["auto", "on", "off"] = Field(
        "auto", description="Claude Code's own sandbox: auto runs it only when onloop's sandbox is off"
    )


def parse_options(spec: BackendSpec, model: type[BaseModel]) -> Any:
    """Validate a backend's options; errors name `backends.<name>.<key>`."""
    options = {k: v for k, v in spec.options.items() if k != "kind"}
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        allowed = sorted(model.model_fields) if first["type"] == "extra_forbidden" else None
        msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(msg, key=f"backends.{spec.name}.{key}", allowed=allowed) from None


class ClaudeCodeBackend:
    capabilities = CAPABILITIES

    def __init__(self, name: str, options: ClaudeOptions, policy: Policy | None = None) -> None:
        self.name = name
        self.options = options
        self.policy = policy or Policy()

    def argv(self, request: AgentRequest, setup: ClaudeSetup) -> list[str]:
        o = self.options
        argv = resolve_command(o.command, "claude")
        argv += ["-p", "--output-format", "stream-json", "--verbose", "--max-turns", str(o.max_turns)]
        argv += list(setup.args)  # --setting-sources user, --settings (sandbox, guard hook), ...
        if o.model:
            argv += ["--model", o.model]
        if o.allowed_tools:
            argv += ["--allowedTools", ",".join(o.allowed_tools)]
        argv += list(o.extra_args)
        check_args("claude", argv)
        return argv

    def env(self, request: AgentRequest, setup: ClaudeSetup) -> dict[str, str]:
        env = agent_env(request, setup.env)
        if self.options.base_url:
            env["ANTHROPIC_BASE_URL"] = self.options.base_url
        pass_secret(env, self.options.api_key_env, target="ANTHROPIC_API_KEY")
        return env

    def run(self, request: AgentRequest) -> AgentResult:
        request.scratch_dir.mkdir(parents=True, exist_ok=True)
        inner = inner_sandbox_on(self.options.inner_sandbox, request.sandbox.name, self.name)
        setup = prepare_claude(self.policy, request.worktree, request.scratch_dir, sandbox=inner)
        parser = ClaudeStreamParser(trust_cost=self.options.base_url is None)
        return run_cli(request, self.argv(request, setup), self.env(request, setup), parser,
                       stdin=request.prompt.encode())

    def parse_log(self, log_path: Path) -> AgentResult:
        return replay_log(ClaudeStreamParser(trust_cost=self.options.base_url is None), log_path)


def create(spec: BackendSpec) -> ClaudeCodeBackend:
    return ClaudeCodeBackend(spec.name, parse_options(spec, ClaudeOptions), spec.policy)


class ClaudeStreamParser:
    """Parses Claude Code's stream-json lines (system, assistant, user, result)."""

    def __init__(self, *, trust_cost: bool = True, clock: Clock | None = None) -> None:
        self.trust_cost = trust_cost
        self.clock: Clock = clock or SystemClock()  # "try again in 5s" is relative to when it was read
        self.session_id: str | None = None
        self.model: str | None = None
        self.events = 0
        self.result: dict[str, Any] | None = None
        self.last_text = ""
        self.usage_seen: dict[str, Usage] = {}  # message id -> usage (streamed messages repeat it)

    def feed(self, line: str) -> list[AgentEvent]:
        obj = json_line(line)
        if obj is None:
            return []
        events = list(self._events(obj))
        self.events += len(events)
        return events

    def _events(self, obj: dict[str, Any]) -> list[AgentEvent]:
        kind = obj.get("type")
        if kind == "system":
            self.session_id = obj.get("session_id") or self.session_id
            self.model = obj.get("model") or self.model
            return [AgentEvent("system", f"session {self.session_id} model {self.model}", obj)]
        if kind == "assistant":
            return self._assistant(obj.get("message") or {})
        if kind == "user":
            return [
                AgentEvent("tool_result", _short(_tool_result_text(block)), block)
                for block in _content(obj.get("message") or {})
                if block.get("type") == "tool_result"
            ]
        if kind == "result":
            self.result = obj
            self.session_id = obj.get("session_id") or self.session_id
            return [AgentEvent("result", _short(str(obj.get("result", ""))), _without(obj, "modelUsage"))]
        return []

    def _assistant(self, message: dict[str, Any]) -> list[AgentEvent]:
        usage = message.get("usage")
        if isinstance(usage, dict) and message.get("id"):
            self.usage_seen[str(message["id"])] = _usage(usage)
        events = []
        for block in _content(message):
            if block.get("type") == "text" and block.get("text"):
                self.last_text = str(block["text"])
                events.append(AgentEvent("message", _short(self.last_text), block))
            elif block.get("type") == "tool_use":
                summary = f"{block.get('name')} {_short(str(block.get('input', '')), 160)}"
                events.append(AgentEvent("tool_call", summary, block))
        return events

    def finish(self, *, exit_code: int | None, timed_out: bool, log_path: Path | None) -> AgentResult:
        result = self.result
        usage = _usage(result["usage"]) if result and isinstance(result.get("usage"), dict) else None
        if usage is None:  # cut off before the result: sum what the streamed messages reported
            usage = sum(self.usage_seen.values(), Usage())
        common: dict[str, Any] = {
            "events": self.events,
            "usage": usage,
            "session_id": self.session_id,
            "exit_code": exit_code,
            "raw_log_path": log_path,
            "model": self.model,
        }
        if timed_out:
            return AgentResult(AgentStatus.TIMEOUT, self.last_text, error="agent timed out", **common)
        if result is None:
            return AgentResult(AgentStatus.CRASHED, self.last_text, error="no result event", **common)
        return self._from_result(result, exit_code, common)

    def _from_result(self, result: dict[str, Any], exit_code: int | None, common: dict[str, Any]) -> AgentResult:
        text = str(result.get("result") or self.last_text)
        denials = tuple(str(d.get("tool_name", "?")) for d in result.get("permission_denials") or [])
        cost = self._cost(result)
        is_error = bool(result.get("is_error")) or (exit_code not in (0, None))
        if not is_error:
            return AgentResult(AgentStatus.OK, text, cost=cost, permission_denials=denials, **common)
        # Only the CLI's own words (the result text, its `errors`) can say why it failed: the agent's last
        # message may well talk about rate limits or "429" while working on a rate limiter.
        cli_text = " ".join([str(result.get("result") or ""), *map(str, result.get("errors") or [])]).strip()
        error = (cli_text or text)[:300]
        if result.get("subtype") == "error_max_turns":
            return AgentResult(AgentStatus.MAX_TURNS, text, cost=cost, error=error, permission_denials=denials,
                               **common)
        hit = ratelimits.detect(cli_text, self.clock.now())
        reset = hit.reset if hit else None
        if result.get("api_error_status") == 429 or hit is not None:
            return AgentResult(
                AgentStatus.RATE_LIMITED, text, cost=cost, error=error, rate_limit_reset=reset, **common
            )
        status = AgentStatus.DENIED if denials else AgentStatus.FAILED
        return AgentResult(status, text, cost=cost, error=error, permission_denials=denials, **common)

    def _cost(self, result: dict[str, Any]) -> Cost:
        raw = result.get("total_cost_usd")
        if raw is None or not self.trust_cost:
            return Cost.unknown()
        try:
            return Cost(Decimal(str(raw)), CostSource.REPORTED)
        except InvalidOperation:
            return Cost.unknown()


def _usage(raw: dict[str, Any]) -> Usage:
    cached = int(raw.get("cache_read_input_tokens") or 0)
    created = int(raw.get("cache_creation_input_tokens") or 0)
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0) + cached + created,
        output_tokens=int(raw.get("output_tokens") or 0),
        cached_input_tokens=cached,
    )


def _content(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _tool_result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _without(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}
