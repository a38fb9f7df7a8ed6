"""aider (`aider --message-file <scratch>/prompt.md --yes-always ...`), read from its human-text output.

aider has no structured event stream, so this adapter degrades, loudly (`warn_missing_capabilities`):
it reads the lines aider prints for a human (transcript `tests/data/agent-cli/aider-success.txt`):

- ``Tokens: 1.3k sent, 40 received. Cost: $0.01 message, $0.02 session.`` after every answer: the
  counts are aider's rounded ones ("1.3k"), so usage is approximate; the cost is aider's session total
  (litellm's price table), trusted unless the model sits behind a custom `base_url`;
- the answer itself is the text printed before that line (code fences dropped); the last one is the
  final message;
- ``Applied edit to calc.py`` and ``Commit 3c06d70 ...`` are events;
- ``litellm.RateLimitError: ...`` / "The API provider has rate limited you" / "Retrying in 0.2
  seconds..." is a rate limit only if no answer follows it (aider retries by itself first);
  other ``litellm.*Error`` lines with no answer after them make the run FAILED, AUTH_FAILED when they say
  the key was refused (``litellm.AuthenticationError``, a 401).

Side effects suppressed by the argv: auto-commits (onloop makes the checkpoint commits), `.gitignore`
edits, history files in the worktree (they go to the scratch dir), update checks, release notes,
analytics, the litellm price-map download (`LITELLM_LOCAL_MODEL_COST_MAP=True`), shell commands it
would suggest.

Files aider may not take: with `--yes-always`, aider answers yes to its own "Add file to the chat?"
for every repository file an answer names, and sends it whole to the model as editable. The policy's
`protected` globs (and onloop.toml) go into an `--aiderignore` file in the scratch dir, so aider does
not list them at all: not addable, not in its repo map, not edited (the diff audit still stands
behind it). aider's own question lines ("... (Y)es/(N)o ... [Yes]: y") are not part of an answer.
aider has no sandbox of its own and `--test-cmd` runs with its privileges: run it under onloop's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from onloop.backends import ratelimits
from onloop.backends._adapters import money, price, short
from onloop.backends._cli import agent_env, pass_secret, replay_log, resolve_command, run_cli, warn_missing_capabilities
from onloop.backends.auth import KeyHint, auth_failed_message, is_auth_failure
from onloop.backends.base import AgentEvent, AgentRequest, AgentResult, AgentStatus, BackendSpec, Capabilities
from onloop.backends.claude_code import parse_options
from onloop.clock import Clock, SystemClock
from onloop.models.config import Prices
from onloop.policy.agent_cli import check_args
from onloop.usage import Cost, Usage

CAPABILITIES = Capabilities(structured_events=False, token_usage=True, cost=True)
_COUNT = r"[\d.]+[kKmM]?"
_TOKENS = re.compile(
    rf"^Tokens: (?P<sent>{_COUNT}) sent(?:, (?P<write>{_COUNT}) cache write)?(?:, (?P<hit>{_COUNT}) cache hit)?"
    rf", (?P<received>{_COUNT}) received\.?(?:\s+Cost: \$(?P<message>[\d.]+) message, \$(?P<session>[\d.]+) session)?"
)
_BANNER = re.compile(
    r"^(Aider v|Main model:|Model:|Weak model:|Editor model:|Git repo:|Repo-map:|Added .* to the chat|"
    r"https://aider\.chat/|Detected dumb terminal|Warning:|Cost estimates|Use /help)"
)
_APPLIED = re.compile(r"^Applied edit to (?P<path>.+)$")
_COMMIT = re.compile(r"^Commit (?P<sha>[0-9a-f]{7,40}) (?P<message>.*)$")
_LITELLM_ERROR = re.compile(r"^litellm\.(?P<name>\w+):")
# One of aider's own confirmations, as it prints them answered: `Add file to the chat? (Y)es/(N)o/... [Yes]: y`.
_QUESTION = re.compile(r"\? \(Y\)es/\(N\)o[^\n]*\[[^\]\n]*\]: ?\w*\s*$")
ALWAYS_IGNORED = ("onloop.toml",)
_PATHLIKE = re.compile(r"[\w./-]*[./][\w./-]*")


class AiderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] | None = Field(None, description="argv prefix instead of `aider` on PATH")
    model: str | None = Field(None, description="--model, litellm style (`openai/<name>` for a custom base_url)")
    base_url: str | None = Field(None, description="--openai-api-base (an OpenAI-compatible endpoint)")
    api_key_env: str | None = Field(None, description="environment variable holding the API key to pass")
    edit_format: str | None = Field(None, description="--edit-format (whole, diff, udiff, ...)")
    test_cmd: str | None = Field(None, description="--test-cmd, run by aider after its edits")
    auto_test: bool = Field(False, description="--auto-test")
    files: list[str] = Field(default_factory=list, description="files to add to the chat, relative to the worktree")
    prices: Prices | None = Field(None, description="USD per million tokens, to price a local model")
    extra_args: list[str] = Field(default_factory=list, description="more aider arguments, appended as given")


class AiderBackend:
    capabilities = CAPABILITIES
    kind = "aider"

    def __init__(self, name: str, options: AiderOptions, clock: Clock | None = None,
                 protected: tuple[str, ...] = ALWAYS_IGNORED) -> None:
        self.name = name
        self.options = options
        self.clock = clock or SystemClock()
        self.protected = tuple(dict.fromkeys((*protected, *ALWAYS_IGNORED)))

    def argv(self, request: AgentRequest) -> list[str]:
        o = self.options
        scratch = request.scratch_dir
        argv = resolve_command(o.command, "aider")
        argv += ["--message-file", str(scratch / "prompt.md"), "--yes-always", "--no-suggest-shell-commands",
                 "--no-auto-commits", "--no-gitignore", "--no-check-update", "--no-show-release-notes",
                 "--no-analytics", "--aiderignore", str(scratch / "aiderignore"),
                 "--no-show-model-warnings", "--no-pretty", "--no-stream", "--map-tokens", "0", "--no-detect-urls",
                 "--chat-history-file", str(scratch / "aider.chat.history.md"),
                 "--input-history-file", str(scratch / "aider.input.history"),
                 "--llm-history-file", str(scratch / "aider.llm.history")]
        if o.model:
            argv += ["--model", o.model]
        if o.base_url:
            argv += ["--openai-api-base", o.base_url]
        if o.edit_format:
            argv += ["--edit-format", o.edit_format]
        if o.test_cmd:
            argv += ["--test-cmd", o.test_cmd] + (["--auto-test"] if o.auto_test else [])
        argv = [*argv, *o.extra_args, *o.files]
        check_args("aider", argv)
        return argv

    def env(self, request: AgentRequest) -> dict[str, str]:
        env = agent_env(request, {"LITELLM_LOCAL_MODEL_COST_MAP": "True"})
        if self.options.base_url:
            if self.options.api_key_env:
                pass_secret(env, self.options.api_key_env, target="OPENAI_API_KEY")
            else:
                env["OPENAI_API_KEY"] = "onloop-local"  # litellm insists on a key; a local server ignores it
        else:
            pass_secret(env, self.options.api_key_env)
        return env

    def parser(self) -> AiderOutputParser:
        o = self.options
        return AiderOutputParser(
            now=self.clock.now,
            price=lambda usage, reported: price(
                usage, model=o.model, base_url=o.base_url, prices=o.prices, reported=reported
            ),
            model=o.model,
        )

    def aiderignore(self) -> str:
        """The protected globs in gitignore syntax, anchored at the repository root as the policy means them."""
        return "".join(f"/{glob.lstrip('/')}\n" for glob in self.protected)

    def run(self, request: AgentRequest) -> AgentResult:
        request.scratch_dir.mkdir(parents=True, exist_ok=True)
        (request.scratch_dir / "prompt.md").write_text(request.prompt, encoding="utf-8")
        (request.scratch_dir / "aiderignore").write_text(self.aiderignore(), encoding="utf-8")
        return self.explain(run_cli(request, self.argv(request), self.env(request), self.parser()))

    def parse_log(self, log_path: Path) -> AgentResult:
        return self.explain(replay_log(self.parser(), log_path))

    def explain(self, result: AgentResult) -> AgentResult:
        """A refused key becomes a message that names this backend and the variable to fix."""
        if result.status is not AgentStatus.AUTH_FAILED:
            return result
        passed = "OPENAI_API_KEY" if self.options.base_url else None
        hint = KeyHint(self.name, self.kind, self.options.api_key_env, passed_as=passed, suggested="OPENAI_API_KEY")
        return replace(result, error=auth_failed_message(hint, result.error or ""))


def create(spec: BackendSpec) -> AiderBackend:
    backend = AiderBackend(spec.name, parse_options(spec, AiderOptions), protected=tuple(spec.policy.protected))
    warn_missing_capabilities(spec.name, CAPABILITIES)
    return backend


def parse_count(text: str) -> int:
    """aider's rounded token counts: "40", "1.3k", "12k", "1.1M"."""
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    number = text[:-1] if scale != 1 else text
    return round(float(number) * scale)


class AiderOutputParser:
    """Reads aider's text output line by line (see the module docstring for what it looks for)."""

    def __init__(self, *, now: Callable[[], datetime], price: Callable[[Usage, Decimal | None], Cost],
                 model: str | None = None) -> None:
        self.now = now
        self.price = price
        self.model = model
        self.events = 0
        self.usage = Usage()
        self.answers = 0
        self.session_cost: Decimal | None = None
        self.buffer: list[str] = []  # lines since the last banner, answer or action line
        self.final_message = ""
        self.pending_limit: list[str] = []  # limit text with no answer after it (yet)
        self.pending_error: list[str] = []

    def feed(self, line: str) -> list[AgentEvent]:
        events = self._events(line.rstrip("\r"))
        self.events += len(events)
        return events

    def abort_reason(self) -> str | None:
        return None  # aider gives up by itself after a few retries

    def _events(self, line: str) -> list[AgentEvent]:
        tokens = _TOKENS.match(line)
        if tokens:
            return self._answer(tokens)
        error = _LITELLM_ERROR.match(line)
        if error:
            return self._error(error.group("name"), line)
        if self.pending_limit and ("rate limited you" in line or line.startswith("Retrying in")):
            self.pending_limit.append(line)
            return []
        applied = _APPLIED.match(line)
        commit = _COMMIT.match(line)
        if applied or commit or _BANNER.match(line):
            self.buffer = []
        if applied:
            return [AgentEvent("tool_result", line, {"path": applied.group("path")})]
        if commit:
            return [AgentEvent("system", line, {"sha": commit.group("sha"), "message": commit.group("message")})]
        if _QUESTION.search(line):
            # aider's own question, answered: the subject it printed just before belongs to it too.
            if self.buffer and self.buffer[-1].strip() and " " not in self.buffer[-1].strip():
                self.buffer.pop()
            return []
        if not _BANNER.match(line):
            self.buffer.append(line)
        return []

    def _answer(self, match: re.Match[str]) -> list[AgentEvent]:
        hit = parse_count(match.group("hit")) if match.group("hit") else 0
        sent = parse_count(match.group("sent"))
        usage = Usage(input_tokens=sent, output_tokens=parse_count(match.group("received")),
                      cached_input_tokens=min(hit, sent))
        self.usage += usage
        self.answers += 1
        if match.group("session"):
            self.session_cost = money(match.group("session"))
        self.pending_limit, self.pending_error = [], []  # aider got past them
        events = []
        reply = _reply_text(self.buffer)
        self.buffer = []
        if reply:
            self.final_message = reply
            events.append(AgentEvent("message", short(reply), {"text": reply}))
        events.append(AgentEvent("usage", match.group(0), {"input_tokens": usage.input_tokens,
                                                           "output_tokens": usage.output_tokens}))
        return events

    def _error(self, name: str, line: str) -> list[AgentEvent]:
        self.buffer = []
        if "RateLimit" in name:
            self.pending_limit.append(line)
            return [AgentEvent("rate_limit", short(line), {"error": name})]
        self.pending_error.append(line)
        return [AgentEvent("error", short(line), {"error": name})]

    def finish(self, *, exit_code: int | None, timed_out: bool, log_path: Path | None) -> AgentResult:
        common: dict[str, Any] = {
            "events": self.events, "usage": self.usage, "cost": self.price(self.usage, self.session_cost),
            "exit_code": exit_code, "raw_log_path": log_path, "model": self.model,
        }
        text = self.final_message
        if timed_out:
            return AgentResult(AgentStatus.TIMEOUT, text, error="agent timed out", **common)
        problem = "\n".join(self.pending_limit or self.pending_error)
        if exit_code is not None and exit_code < 0:
            return AgentResult(AgentStatus.CRASHED, text, error=f"aider killed by signal {-exit_code}", **common)
        hit = ratelimits.detect(problem, self.now()) if self.pending_limit else None
        if hit is not None:
            return AgentResult(AgentStatus.RATE_LIMITED, text, error=hit.message, rate_limit_reset=hit.reset, **common)
        if self.pending_error and is_auth_failure(problem):
            return AgentResult(AgentStatus.AUTH_FAILED, text, error=problem[:300], **common)
        if problem or (exit_code is not None and exit_code > 0):
            error = problem[:300] or f"aider exited with status {exit_code}"
            return AgentResult(AgentStatus.FAILED, text, error=error, **common)
        if exit_code is None and self.answers == 0:
            return AgentResult(AgentStatus.CRASHED, text, error="no answer in the log", **common)
        return AgentResult(AgentStatus.OK, text, **common)


def _reply_text(lines: list[str]) -> str:
    """The answer's prose: code fences (the edits themselves) and the file names before them dropped,
    and the subjects of aider's own questions before it (a file it added to the chat by itself, printed
    alone on its line before the answer)."""
    kept: list[str] = []
    fenced = False
    start = 0
    while start < len(lines) and (not lines[start].strip() or _PATHLIKE.fullmatch(lines[start].strip())):
        start += 1
    if start < len(lines):
        lines = lines[start:]
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
            if fenced:
                _drop_file_name(kept)
            continue
        if not fenced:
            kept.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def _drop_file_name(kept: list[str]) -> None:
    """Drop the file name aider prints above a whole-file block (and the blank lines after it)."""
    while kept and not kept[-1].strip():
        kept.pop()
    if kept and " " not in kept[-1].strip():
        kept.pop()
