"""The agent backend protocol: what does the work in one iteration.

A backend is anything that takes a prompt and a worktree and changes the worktree: an agent CLI run as
a subprocess (Claude Code, Codex, aider, opencode, any command) or onloop's built-in agent. The loop
knows nothing else about it. One narrow method, `run`, and declared capabilities, so the loop can say
(loudly, once) what a backend cannot report instead of silently recording zeros.

Every backend returns the same `AgentResult`, whatever it wraps. The raw output is always streamed to
`request.log_path` while the agent runs, so that a crash of the agent or of onloop keeps the partial
transcript, and `parse_log` can recover usage from it after a `kill -9` (used by `--resume`).

Two things in a result are easy to lose and expensive to miss, so they have fields of their own:
`permission_denials` (actions the agent's own permission system or onloop's guard hook refused: a run
can "succeed" having changed nothing), and status AUTH_FAILED (the provider refused the credentials:
unlike every other failure, trying again cannot help, so the loop stops at once). `malformed_events`
counts output the adapter could not read against the CLI's schema and skipped, so a CLI that changed
its format shows up as a number instead of an exception or silent zeros.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from onloop.policy.model import Policy
from onloop.process import Limits, Sandbox
from onloop.usage import Cost, Usage


class AgentStatus(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    MAX_TURNS = "max_turns"
    DENIED = "denied"
    RATE_LIMITED = "rate_limited"
    CRASHED = "crashed"  # killed by a signal or ended without a final result
    AUTH_FAILED = "auth_failed"  # the provider refused the credentials: retrying cannot fix it


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can tell onloop. Missing ones are degraded with a logged warning, never silently."""

    structured_events: bool = False
    token_usage: bool = False
    cost: bool = False
    resume: bool = False
    permission_control: bool = False


@dataclass(frozen=True, slots=True)
class AgentEvent:
    """One thing the agent did, normalised across backends. `data` keeps the raw fields."""

    kind: str  # system | message | tool_call | tool_result | usage | error | result | rate_limit
    summary: str
    data: Mapping[str, Any] = field(default_factory=dict)


EventSink = Callable[[AgentEvent], None]


@dataclass(frozen=True, slots=True)
class AgentRequest:
    prompt: str
    worktree: Path
    log_path: Path  # raw output of the agent, appended to as it streams
    scratch_dir: Path  # private, writable, outside the worktree (config dirs, hooks, reports)
    sandbox: Sandbox
    timeout: float
    run_id: str = ""
    iteration: int = 0
    attempt: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    budget_remaining_usd: Decimal | None = None
    on_event: EventSink | None = None
    limits: Limits = Limits()  # the policy's resource limits, applied to the agent and what it runs


@dataclass(frozen=True, slots=True)
class PermissionDenial:
    """One action the agent asked for and was refused: the tool and what it was aimed at."""

    tool: str
    target: str = ""  # the file, the command or the URL, when the CLI said

    def __str__(self) -> str:
        return f"{self.tool} {self.target}".strip()


@dataclass(frozen=True, slots=True)
class AgentResult:
    status: AgentStatus
    final_message: str = ""
    events: int = 0
    usage: Usage = Usage()
    cost: Cost = Cost.unknown()
    session_id: str | None = None
    exit_code: int | None = None
    raw_log_path: Path | None = None
    model: str | None = None
    error: str | None = None
    rate_limit_reset: datetime | None = None
    permission_denials: tuple[PermissionDenial, ...] = ()
    malformed_events: int = 0  # output events (or their usage or cost) that did not match the schema

    @property
    def failed(self) -> bool:
        return self.status not in (AgentStatus.OK, AgentStatus.RATE_LIMITED)

    @property
    def fatal(self) -> bool:
        """A failure that no retry can fix: the run must stop now, not after N more failures."""
        return self.status is AgentStatus.AUTH_FAILED


@runtime_checkable
class AgentBackend(Protocol):
    """One agent backend. Implementations live in their own module under `onloop.backends`."""

    name: str
    capabilities: Capabilities

    def run(self, request: AgentRequest) -> AgentResult:
        """Run one fresh-context agent invocation in `request.worktree` and report what happened."""
        ...

    def parse_log(self, log_path: Path) -> AgentResult:
        """Rebuild the result (usage above all) from a raw log, possibly cut off by a crash."""
        ...


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """A configured backend: its name in onloop.toml, its kind, and the kind-specific options."""

    name: str
    kind: str
    options: Mapping[str, Any]
    workspace: Path
    policy: Policy = field(default_factory=Policy)  # what the CLI's own permission system is set to


BackendFactory = Callable[[BackendSpec], AgentBackend]
