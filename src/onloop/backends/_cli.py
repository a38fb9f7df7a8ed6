"""Shared plumbing of the agent CLI adapters.

An adapter is three small things: an argv builder, an environment builder, and a stream parser that
turns the CLI's output lines into `AgentEvent`s as they arrive and into one `AgentResult` at the end.
This module runs the process (under the request's sandbox, with the request's timeout, the raw output
streamed to the run log) and drives the parser, so every adapter gets the same guarantees: a partial
transcript survives a crash, `parse_log` replays a log file through the very same parser, and a
timeout kills the CLI's whole process group (Codex, for one, retries a dead endpoint forever).

A parser can also end the run early: once `abort_reason` says the CLI is retrying something that no
retry can fix (refused credentials), the CLI's process group is killed at once and the parser's
verdict is taken from what it has read, instead of waiting out the CLI's own backoff.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from onloop.backends.base import AgentEvent, AgentRequest, AgentResult, Capabilities
from onloop.errors import BackendError
from onloop.process import ProcessSpec, run_process

log = logging.getLogger(__name__)


class StreamParser(Protocol):
    def feed(self, line: str) -> list[AgentEvent]:
        """Events found in one output line (often zero or one)."""
        ...

    def finish(self, *, exit_code: int | None, timed_out: bool, log_path: Path | None) -> AgentResult:
        """The result once the output has ended (cut off, possibly, by a crash or a timeout)."""
        ...

    def abort_reason(self) -> str | None:
        """Why the CLI should be stopped now (it retries what cannot succeed), or None to let it run."""
        ...


class _Abort(Exception):
    """Raised from the line callback to end the CLI early; `run_process` kills its process group while
    the exception passes through it (the same cleanup as for any error), and `run_cli` catches it."""


def agent_env(request: AgentRequest, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every agent CLI gets: the request's allowlisted env, onloop's own markers."""
    env = dict(request.env)
    env.update(
        {
            "ONLOOP_RUN_ID": request.run_id,
            "ONLOOP_ITERATION": str(request.iteration),
            "ONLOOP_ATTEMPT": str(request.attempt),
            "ONLOOP_WORKTREE": str(request.worktree),
            "ONLOOP_SCRATCH": str(request.scratch_dir),
        }
    )
    if extra:
        env.update(extra)
    return env


def pass_secret(env: dict[str, str], name: str | None, *, target: str | None = None) -> None:
    """Pass one named secret from onloop's environment to the agent (only when the config names it)."""
    if not name:
        return
    value = os.environ.get(name)
    if value is None:
        raise BackendError(f"the environment variable {name} named by api_key_env is not set")
    env[target or name] = value


def run_cli(
    request: AgentRequest,
    argv: Sequence[str],
    env: Mapping[str, str],
    parser: StreamParser,
    *,
    stdin: bytes | None = None,
    writable: Sequence[Path] = (),
) -> AgentResult:
    """Run one agent CLI invocation and parse its output as it streams.

    `writable` adds paths the CLI must be able to write besides the scratch dir (its own state
    directory, such as Codex's `CODEX_HOME`); the sandbox keeps everything else read-only.
    """
    request.log_path.parent.mkdir(parents=True, exist_ok=True)
    spec = ProcessSpec(
        argv=tuple(argv),
        cwd=request.worktree,
        env=env,
        timeout=request.timeout,
        stdin=stdin,
        writable=(request.scratch_dir, *writable),
        network=True,  # the agent needs its model; the sandbox narrows it to what the policy allows
        limits=request.limits,
        label="agent",
    )

    def on_line(line: str) -> None:
        for event in parser.feed(line):
            if request.on_event is not None:
                request.on_event(event)
        reason = parser.abort_reason()
        if reason is not None:
            raise _Abort(reason)

    try:
        outcome = run_process(
            spec,
            request.sandbox,
            log_path=request.log_path,
            on_line=on_line,
            stderr_path=request.log_path.with_suffix(".stderr.log"),
        )
    except FileNotFoundError as exc:
        raise BackendError(f"cannot start the agent: {exc}", run_id=request.run_id) from exc
    except _Abort as abort:
        log.warning("stopped the agent early: %s", abort)
        return parser.finish(exit_code=None, timed_out=False, log_path=request.log_path)
    return parser.finish(exit_code=outcome.exit_code, timed_out=outcome.timed_out, log_path=request.log_path)


def replay_log(parser: StreamParser, log_path: Path) -> AgentResult:
    """Feed a (possibly truncated) raw log through `parser`: usage survives a crash of onloop."""
    if log_path.exists():
        with log_path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                parser.feed(line.rstrip("\n"))
    return parser.finish(exit_code=None, timed_out=False, log_path=log_path)


class JsonLinesFeed:
    """`feed` for a parser of a CLI's JSON-lines stream: one object per line into `_events`, counted
    in `events`; blank lines and non-JSON noise give none."""

    events: int

    def feed(self, line: str) -> list[AgentEvent]:
        obj = json_line(line)
        if obj is None:
            return []
        events = self._events(obj)
        self.events += len(events)
        return events

    def _events(self, obj: dict[str, Any]) -> list[AgentEvent]:
        raise NotImplementedError


def json_line(line: str) -> dict[str, Any] | None:
    """The JSON object on this line, or None for blank lines and non-JSON noise (logged, not fatal)."""
    text = line.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        log.debug("non-JSON line from agent: %.200s", text)
        return None
    return value if isinstance(value, dict) else None


def resolve_command(command: Sequence[str] | None, default: str) -> list[str]:
    """The argv prefix to run: an explicit `command` option, or the CLI's usual binary on PATH."""
    if command:
        return list(command)
    from onloop.safety import ensure_real_cli_allowed

    ensure_real_cli_allowed(default)
    found = shutil.which(default)
    if found is None:
        raise BackendError(f"{default!r} is not installed (not on PATH); install it or set `command`")
    return [found]


_WARNED: set[tuple[str, tuple[str, ...]]] = set()


def warn_missing_capabilities(name: str, caps: Capabilities) -> None:
    """Degrade loudly: say once (per process) what this backend cannot report; a run builds its backend
    more than once (preflight, then the engine), and the run's own events record it once more."""
    missing = tuple(field for field in ("structured_events", "token_usage", "cost") if not getattr(caps, field))
    if missing and (name, missing) not in _WARNED:
        _WARNED.add((name, missing))
        log.warning("backend %s cannot report: %s (recorded as unknown)", name, ", ".join(missing))
