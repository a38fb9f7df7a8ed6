"""Claude Code (`claude -p --output-format stream-json --verbose`), prompt on stdin.

Traps handled (see shared/research/agent-clis.md, all observed on a real binary):
- success is `exit 0 and not is_error`: an unreachable API exits 1 with `subtype: success` and
  `is_error: true`, so `subtype` alone lies;
- `total_cost_usd` is computed by the CLI from its own price table, even for a local model behind a
  custom base URL; with a custom `base_url` onloop records the tokens and marks the cost unknown;
- a repository's own `.claude/settings.json` hooks run in `-p` mode unless `--setting-sources user` is
  given: it always is, with a per-run `CLAUDE_CONFIG_DIR`;
- usage limits come back as an error result ("...usage limit reached|<epoch>" or an API 429): that is a
  rate limit with a reset time, not a failure;
- a refused key is retried by the CLI ten times with a backoff that grows to ~37 s (three minutes, seen
  on 2.1.197 against a fake server answering 401): onloop passes `CLAUDE_CODE_MAX_RETRIES` (option
  `max_retries`, default 2), stops a CLI that retries refused credentials more often than that, and
  reports AUTH_FAILED with the variable to fix (see `onloop.backends.auth`);
- writes denied by its permission system or the guard hook leave the run "successful": the denials
  are in the result's `permission_denials`, and in `AgentResult.permission_denials`.

The stream itself is read by `onloop.backends._claude_stream`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from onloop.backends._claude_stream import DEFAULT_MAX_RETRIES, ClaudeStreamParser
from onloop.backends._cli import agent_env, pass_secret, replay_log, resolve_command, run_cli
from onloop.backends.auth import KeyHint, auth_failed_message
from onloop.backends.base import AgentRequest, AgentResult, AgentStatus, BackendSpec, Capabilities
from onloop.errors import ConfigError
from onloop.policy.agent_cli import ClaudeSetup, check_args, inner_sandbox_on, prepare_claude
from onloop.policy.model import Policy

__all__ = ["ClaudeCodeBackend", "ClaudeOptions", "ClaudeStreamParser", "create", "parse_options"]

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
    max_retries: int = Field(
        DEFAULT_MAX_RETRIES, ge=0,
        description="CLAUDE_CODE_MAX_RETRIES: the CLI's own retries of a failed API call (its default of 10 "
                    "backs off for minutes)",
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
    kind = "claude_code"

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
        env["CLAUDE_CODE_MAX_RETRIES"] = str(self.options.max_retries)
        return env

    def parser(self) -> ClaudeStreamParser:
        return ClaudeStreamParser(trust_cost=self.options.base_url is None, auth_retry_limit=self.options.max_retries)

    def run(self, request: AgentRequest) -> AgentResult:
        request.scratch_dir.mkdir(parents=True, exist_ok=True)
        inner = inner_sandbox_on(self.options.inner_sandbox, request.sandbox.name, self.name)
        setup = prepare_claude(self.policy, request.worktree, request.scratch_dir, sandbox=inner)
        result = run_cli(request, self.argv(request, setup), self.env(request, setup), self.parser(),
                         stdin=request.prompt.encode())
        return self.explain(result)

    def parse_log(self, log_path: Path) -> AgentResult:
        return self.explain(replay_log(self.parser(), log_path))

    def explain(self, result: AgentResult) -> AgentResult:
        """A refused key becomes a message that names this backend and the variable to fix."""
        if result.status is not AgentStatus.AUTH_FAILED:
            return result
        # The config dir is per run, so a `claude /login` of the operator's is not seen: a key it must be.
        hint = KeyHint(self.name, self.kind, self.options.api_key_env, passed_as="ANTHROPIC_API_KEY",
                       suggested="ANTHROPIC_API_KEY")
        return replace(result, error=auth_failed_message(hint, result.error or ""))


def create(spec: BackendSpec) -> ClaudeCodeBackend:
    return ClaudeCodeBackend(spec.name, parse_options(spec, ClaudeOptions), spec.policy)


