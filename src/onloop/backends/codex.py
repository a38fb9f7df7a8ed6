"""OpenAI Codex (`codex exec --json`), the prompt on stdin.

argv: ``codex exec --json --ephemeral -s workspace-write --skip-git-repo-check -C <worktree>
-o <scratch>/codex-last-message.txt -c approval_policy="never" -c sandbox_workspace_write...=true
-c shell_environment_policy.inherit="core" [-m model] -``. The trailing ``-`` makes Codex read the
prompt from stdin; onloop writes it and closes the pipe, so Codex never waits for "additional input".
``--trust`` is never passed: an untrusted repository's own `.codex/config.toml` is then ignored, which
is what keeps a repository from loosening its own sandbox.

`CODEX_HOME` is a directory onloop owns, per backend (option `codex_home`, default
`<ONLOOP_HOME>/codex-home/<backend name>`), holding a `config.toml` onloop regenerates before every
run (the provider for a custom `base_url`, the approval policy, the sandbox settings). It must not be
under /tmp: Codex refuses to create its helper binaries under a temporary directory, and every
sandboxed command then fails with ``bwrap: execvp codex-linux-sandbox: No such file or directory``
(observed with codex-cli 0.169.0). Log in once with ``CODEX_HOME=<that dir> codex login`` to use a
ChatGPT plan, or name the key's environment variable in `api_key_env`.

Traps handled (all observed on a real binary, see shared/research/agent-clis.md):
- an unreachable endpoint prints ``{"type":"error","message":"Reconnecting..."}`` forever and never
  exits: those lines are recorded, never treated as the end; the run's timeout kills the process group;
- an ``item.completed`` of type ``error`` can be a mere warning (unknown model metadata), not a failure;
- there is no dollar figure: usage comes from every ``turn.completed`` (summed), the cost from
  `_adapters.price` (the options' `prices`, else the model's list price, else unknown; always unknown
  behind a custom `base_url` without `prices`);
- usage limits arrive as ``error`` + ``turn.failed`` ("You've hit your usage limit ... try again at
  ...", or "exceeded retry limit, last status: 429"): that is RATE_LIMITED with the reset time;
- a refused key is retried like a dropped stream: ``Reconnecting... 1/5 (unexpected status 401
  Unauthorized: ...)`` five times with a growing backoff before ``turn.failed`` (codex-cli 0.171.0,
  `tests/data/agent-cli/codex-auth-401.jsonl`). Its retry count can only be set for a custom provider,
  not for the built-in one, so onloop stops Codex at the second refused attempt (one retry is left for a
  ChatGPT token refresh) and reports AUTH_FAILED with the variable to fix.

Every event is validated against a model of the fields read here (`onloop.backends._schema`): one that
does not match is skipped and counted in `AgentResult.malformed_events`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from onloop.backends import ratelimits
from onloop.backends._adapters import (
    backend_home,
    failure_result,
    is_under_tmp,
    pass_api_key,
    price,
    short,
    write_atomic,
)
from onloop.backends._cli import (
    JsonLinesFeed,
    agent_env,
    replay_log,
    resolve_command,
    run_cli,
    warn_missing_capabilities,
)
from onloop.backends._schema import Event, Tokens, parse
from onloop.backends.auth import KeyHint, auth_failed_message, is_auth_failure
from onloop.backends.base import AgentEvent, AgentRequest, AgentResult, AgentStatus, BackendSpec, Capabilities
from onloop.backends.claude_code import parse_options
from onloop.clock import Clock, SystemClock
from onloop.models.config import Prices
from onloop.policy.agent_cli import check_args, inner_sandbox_on
from onloop.policy.model import Policy
from onloop.usage import Cost, Usage

log = logging.getLogger(__name__)

CAPABILITIES = Capabilities(structured_events=True, token_usage=True, cost=False, resume=False)
LOCAL_KEY_VAR = "ONLOOP_CODEX_API_KEY"
AUTH_ATTEMPTS = 2  # refused attempts after which Codex is stopped (the second is after a token refresh)
_LAST_MESSAGE = "codex-last-message.txt"
_TOOL_ITEMS = frozenset({"command_execution", "file_change", "mcp_tool_call", "web_search", "todo_list"})


class CodexOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] | None = Field(None, description="argv prefix instead of `codex` on PATH")
    model: str | None = Field(None, description="-m (also used to price the tokens)")
    base_url: str | None = Field(None, description="an OpenAI Responses-compatible endpoint (a custom provider)")
    api_key_env: str | None = Field(None, description="environment variable holding the API key to pass")
    wire_api: Literal["responses"] = Field("responses", description="the provider's wire API (Codex knows one)")
    codex_home: str | None = Field(None, description="CODEX_HOME (default <ONLOOP_HOME>/codex-home/<name>)")
    sandbox: Literal["read-only", "workspace-write"] = Field("workspace-write", description="-s")
    inner_sandbox: Literal["auto", "on", "off"] = Field(
        "auto", description="Codex's own sandbox: auto runs it only when onloop's sandbox is off (it cannot nest)"
    )
    network_access: bool = Field(False, description="sandbox_workspace_write.network_access")
    prices: Prices | None = Field(None, description="USD per million tokens, to price a local model")
    extra_args: list[str] = Field(default_factory=list, description="more `codex exec` arguments, as given")


class CodexBackend:
    capabilities = CAPABILITIES
    kind = "codex"

    def __init__(self, name: str, options: CodexOptions, clock: Clock | None = None,
                 policy: Policy | None = None) -> None:
        self.name = name
        self.options = options
        self.policy = policy or Policy()
        # Codex's own sandbox gets network only when the policy gives the agent the full network.
        self.network = options.network_access and self.policy.network == "full"
        self.clock = clock or SystemClock()
        self.home = backend_home("codex-home", name, options.codex_home)
        if is_under_tmp(self.home):
            log.warning("backend %s: CODEX_HOME %s is under a temporary directory; Codex's sandboxed "
                        "commands fail there (set backends.%s.codex_home)", name, self.home, name)

    def argv(self, request: AgentRequest) -> list[str]:
        o = self.options
        argv = resolve_command(o.command, "codex")
        check_args("codex", [*argv, *o.extra_args])  # the operator's flags never switch the guardrails off
        argv += ["exec", "--json", "--ephemeral", "--skip-git-repo-check"]
        if inner_sandbox_on(o.inner_sandbox, request.sandbox.name, self.name):
            argv += ["-s", o.sandbox]
        else:
            # onloop's bubblewrap is the wall (Codex's own cannot nest inside it); approvals stay "never".
            argv += ["--dangerously-bypass-approvals-and-sandbox"]
        argv += ["-C", str(request.worktree), "-o", str(request.scratch_dir / _LAST_MESSAGE)]
        for override in (
            'approval_policy="never"',
            "sandbox_workspace_write.exclude_slash_tmp=true",
            "sandbox_workspace_write.exclude_tmpdir_env_var=true",
            f"sandbox_workspace_write.network_access={str(self.network).lower()}",
            'shell_environment_policy.inherit="core"',
        ):
            argv += ["-c", override]
        if o.model:
            argv += ["-m", o.model]
        return [*argv, *o.extra_args, "-"]

    def env(self, request: AgentRequest) -> dict[str, str]:
        self.write_config()
        env = agent_env(request, {"CODEX_HOME": str(self.home)})
        pass_api_key(env, self.options.api_key_env, base_url=self.options.base_url, local_key_var=LOCAL_KEY_VAR,
                     hosted_target="CODEX_API_KEY")
        return env

    def write_config(self) -> Path:
        """(Re)write `$CODEX_HOME/config.toml` atomically; returns its path."""
        return write_atomic(self.home / "config.toml", render_config(self.name, self.options, network=self.network))

    def parser(self) -> CodexStreamParser:
        o = self.options
        return CodexStreamParser(
            now=self.clock.now,
            price=lambda usage: price(usage, model=o.model, base_url=o.base_url, prices=o.prices),
            model=o.model,
        )

    def run(self, request: AgentRequest) -> AgentResult:
        request.scratch_dir.mkdir(parents=True, exist_ok=True)
        env = self.env(request)
        result = run_cli(request, self.argv(request), env, self.parser(), stdin=request.prompt.encode(),
                         writable=(self.home,))
        return self.explain(_with_last_message(result, request.scratch_dir / _LAST_MESSAGE))

    def parse_log(self, log_path: Path) -> AgentResult:
        return self.explain(replay_log(self.parser(), log_path))

    def explain(self, result: AgentResult) -> AgentResult:
        """A refused key becomes a message that names this backend and the variable to fix."""
        if result.status is not AgentStatus.AUTH_FAILED:
            return result
        o = self.options
        hosted = o.base_url is None
        hint = KeyHint(self.name, self.kind, o.api_key_env, passed_as="CODEX_API_KEY" if hosted else None,
                       suggested="OPENAI_API_KEY",
                       login=f"log Codex in once with `CODEX_HOME={self.home} codex login`" if hosted else None)
        return replace(result, error=auth_failed_message(hint, result.error or ""))


def create(spec: BackendSpec) -> CodexBackend:
    warn_missing_capabilities(spec.name, CAPABILITIES)
    return CodexBackend(spec.name, parse_options(spec, CodexOptions), policy=spec.policy)


def render_config(name: str, o: CodexOptions, *, network: bool = False) -> str:
    """The `config.toml` onloop gives Codex (strings are JSON-quoted, which TOML reads alike)."""
    q = json.dumps
    lines = [f"# Written by onloop for backend {name}; rewritten before every run.",
             'approval_policy = "never"', f"sandbox_mode = {q(o.sandbox)}"]
    if o.model:
        lines.append(f"model = {q(o.model)}")
    if o.base_url:
        lines += ['model_provider = "onloop"', "", "[model_providers.onloop]", f"name = {q('onloop ' + name)}",
                  f"base_url = {q(o.base_url)}", f"env_key = {q(o.api_key_env or LOCAL_KEY_VAR)}",
                  f"wire_api = {q(o.wire_api)}"]
    lines += ["", "[sandbox_workspace_write]", f"network_access = {str(network).lower()}",
              "exclude_slash_tmp = true", "exclude_tmpdir_env_var = true",
              "", "[shell_environment_policy]", 'inherit = "core"', ""]
    return "\n".join(lines)


def _with_last_message(result: AgentResult, path: Path) -> AgentResult:
    """Fill in the final message from `-o` when the stream had no agent_message (cut off, say)."""
    if result.final_message or not path.is_file():
        return result
    return replace(result, final_message=path.read_text(encoding="utf-8", errors="replace").strip())


class _Thread(Event):
    thread_id: str | None = None


class _Change(Event):
    path: str | None = None
    kind: str | None = None


class _Item(Event):
    id: str | None = None
    type: str
    text: str | None = None
    message: str | None = None
    command: str | None = None
    aggregated_output: str | None = None
    exit_code: int | None = None
    status: str | None = None
    changes: list[_Change] | None = None
    server: str | None = None
    tool: str | None = None
    query: str | None = None
    items: list[Any] | None = None


class _ItemEvent(Event):
    item: _Item


class _Usage(Event):
    input_tokens: Tokens = 0
    cached_input_tokens: Tokens = 0
    output_tokens: Tokens = 0


class _TurnCompleted(Event):
    usage: Any = None  # validated on its own: a turn that completed counts even when its usage is garbage


class _ErrorBody(Event):
    message: str | None = None


class _TurnFailed(Event):
    error: _ErrorBody | str | None = None


class _Error(Event):
    message: str = ""


class CodexStreamParser(JsonLinesFeed):
    """Parses `codex exec --json` lines: thread, turn and item events (unknown types are ignored)."""

    def __init__(self, *, now: Callable[[], datetime], price: Callable[[Usage], Cost], model: str | None = None):
        self.now = now
        self.price = price
        self.model = model
        self.session_id: str | None = None
        self.events = 0
        self.malformed = 0
        self.usage = Usage()
        self.turns_completed = 0
        self.last_message = ""
        self.failure: str | None = None  # the message of the last turn.failed
        self.errors: list[str] = []  # top-level error lines (reconnects, limits) and warning items
        self.auth_retries = 0  # "Reconnecting..." lines for a refused key
        self.started: set[str] = set()

    def abort_reason(self) -> str | None:
        if self.auth_retries >= AUTH_ATTEMPTS:
            return self.errors[-1] if self.errors else "Codex retries refused credentials"
        return None

    def _events(self, obj: dict[str, Any]) -> list[AgentEvent]:
        kind = obj.get("type")
        if kind == "thread.started":
            thread = parse(_Thread, obj)
            if thread is None:
                return self._malformed()
            self.session_id = thread.thread_id or self.session_id
            return [AgentEvent("system", f"thread {self.session_id}", obj)]
        if kind in ("item.started", "item.completed"):
            event = parse(_ItemEvent, obj)
            if event is None:
                return self._malformed()
            return self._item(event.item, obj["item"], completed=kind == "item.completed")
        if kind == "turn.completed":
            turn = parse(_TurnCompleted, obj)
            return self._malformed() if turn is None else [self._turn_completed(turn)]
        if kind == "turn.failed":
            failed = parse(_TurnFailed, obj)
            return self._malformed() if failed is None else [self._turn_failed(failed, obj)]
        if kind == "error":
            error = parse(_Error, obj)
            return self._malformed() if error is None else [self._error(error.message, obj)]
        return []  # turn.started, item.updated and types newer than this adapter

    def _malformed(self) -> list[AgentEvent]:
        self.malformed += 1
        return []

    def _item(self, item: _Item, raw: dict[str, Any], *, completed: bool) -> list[AgentEvent]:
        if item.type == "agent_message" and completed:
            self.last_message = item.text or ""
            return [AgentEvent("message", short(self.last_message), raw)]
        if item.type == "error" and completed:  # a warning: the turn goes on
            self.errors.append(item.message or "")
            return [AgentEvent("error", short(item.message or ""), raw)]
        if item.type not in _TOOL_ITEMS:
            return []  # reasoning and unknown item types: kept in the raw log only
        events = []
        if (item.id or "") not in self.started:
            self.started.add(item.id or "")
            events.append(AgentEvent("tool_call", _tool_summary(item), raw))
        if completed:
            events.append(AgentEvent("tool_result", _result_summary(item), raw))
        return events

    def _turn_completed(self, turn: _TurnCompleted) -> AgentEvent:
        raw = turn.usage if turn.usage is not None else {}
        counted = parse(_Usage, raw)
        if counted is None:
            self.malformed += 1
            counted = _Usage()
        usage = Usage(input_tokens=counted.input_tokens, output_tokens=counted.output_tokens,
                      cached_input_tokens=counted.cached_input_tokens)
        self.usage += usage
        self.turns_completed += 1
        self.failure = None  # a later turn that completes supersedes an earlier failure
        return AgentEvent("usage", f"{usage.input_tokens} in, {usage.output_tokens} out",
                          raw if isinstance(raw, dict) else {})

    def _turn_failed(self, failed: _TurnFailed, obj: dict[str, Any]) -> AgentEvent:
        error = failed.error
        self.failure = (error.message if isinstance(error, _ErrorBody) else error) or "turn failed"
        return self._error_event(self.failure, obj)

    def _error(self, message: str, obj: dict[str, Any]) -> AgentEvent:
        self.errors.append(message)
        if message.lower().startswith("reconnecting") and is_auth_failure(message):
            self.auth_retries += 1
        return self._error_event(message, obj)

    def _error_event(self, message: str, obj: dict[str, Any]) -> AgentEvent:
        return AgentEvent("rate_limit" if ratelimits.is_rate_limit(message) else "error", short(message), obj)

    def finish(self, *, exit_code: int | None, timed_out: bool, log_path: Path | None) -> AgentResult:
        common: dict[str, Any] = {
            "events": self.events, "usage": self.usage, "cost": self.price(self.usage),
            "session_id": self.session_id, "exit_code": exit_code, "raw_log_path": log_path, "model": self.model,
            "malformed_events": self.malformed,
        }
        text = self.last_message
        if timed_out:
            return AgentResult(AgentStatus.TIMEOUT, text, error=_timeout_reason(self.errors), **common)
        aborted = self.abort_reason()
        if aborted is not None:
            return AgentResult(AgentStatus.AUTH_FAILED, text, error=aborted, **common)
        failure = self.failure
        if failure is None and exit_code is not None and exit_code > 0:
            failure = self.errors[-1] if self.errors else f"codex exited with status {exit_code}"
        if failure is not None:
            return failure_result(failure, text, self.now(), common)
        if exit_code is not None and exit_code < 0:
            return AgentResult(AgentStatus.CRASHED, text, error=f"codex killed by signal {-exit_code}", **common)
        if self.turns_completed == 0:
            return AgentResult(AgentStatus.CRASHED, text, error="no turn.completed event", **common)
        return AgentResult(AgentStatus.OK, text, **common)


def _timeout_reason(errors: list[str]) -> str:
    if errors and "reconnecting" in errors[-1].lower():
        return f"agent timed out while Codex was reconnecting: {errors[-1][:200]}"
    return "agent timed out"


def _tool_summary(item: _Item) -> str:
    if item.type == "command_execution":
        return f"exec {short(item.command or '', 160)}"
    if item.type == "file_change":
        paths = ", ".join(f"{c.kind or '?'} {c.path or '?'}" for c in item.changes or [])
        return f"edit {short(paths, 160)}"
    if item.type == "mcp_tool_call":
        return f"mcp {item.server or '?'}.{item.tool or '?'}"
    if item.type == "web_search":
        return f"web_search {short(item.query or '', 160)}"
    return f"todo_list ({len(item.items or [])} items)"


def _result_summary(item: _Item) -> str:
    status = item.status or "completed"
    if item.type == "command_execution":
        return f"exit {item.exit_code} ({status}): {short(item.aggregated_output or '', 160)}"
    return f"{item.type} {status}"
