"""Helpers for the agent-backend tests: requests, scenarios, fake agent commands, fixture transcripts.

A plain module (not conftest.py) so that test files can import it by name.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from onloop.backends._cli import StreamParser
from onloop.backends.base import AgentEvent, AgentRequest, AgentResult, BackendSpec
from onloop.process import NoSandbox
from onloop.testing.scenario import Edit, Scenario, Step

DATA = Path(__file__).resolve().parent.parent / "data" / "agent-cli"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CALC_BUGGY = '"""Tiny calculator module used as an agent playground."""\n\n\ndef add(a, b):\n    return a - b\n'


class StubClock:
    """A clock stopped at `NOW` (rate-limit resets are computed from it)."""

    def now(self) -> datetime:
        return NOW

    def monotonic(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None:
        return None


def finish_lines(parser: StreamParser, lines: Iterable[str], exit_code: int | None = 0) -> AgentResult:
    """Feed `lines` to `parser` and finish it as a run that exited with `exit_code` (not timed out)."""
    for line in lines:
        parser.feed(line)
    return parser.finish(exit_code=exit_code, timed_out=False, log_path=None)


def fixture_path(name: str) -> Path:
    return DATA / name


def fake_command(cli: str, scenario: Path, *extra: str) -> list[str]:
    """The argv prefix that runs the fake `cli` (the adapter appends the real CLI's arguments)."""
    return [sys.executable, "-m", "onloop.testing.fake_agents", cli, "--scenario", str(scenario), *extra]


def spec(kind: str, options: Mapping[str, Any], workspace: Path, name: str = "agent") -> BackendSpec:
    return BackendSpec(name=name, kind=kind, options=dict(options), workspace=workspace)


def fix_calc_scenario(**step: Any) -> Scenario:
    """One iteration that fixes add() in calc.py, reporting 1200 in / 300 out tokens."""
    base: dict[str, Any] = {
        "message": "Fixed add() in calc.py.",
        "edits": (Edit("calc.py", replace=("return a - b", "return a + b")),),
        "usage": {"input_tokens": 1200, "output_tokens": 300},
        "cost_usd": "0.0125",
    }
    base.update(step)
    return Scenario((Step(**base),))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0 until its parent reaps it; read its state to be sure.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[-1][:1] != "Z"


def wait_dead(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


class Harness:
    """A git repo, a scratch dir outside it, and requests aimed at them."""

    def __init__(self, repo: Path, root: Path) -> None:
        self.repo = repo
        self.root = root
        self.events: list[AgentEvent] = []

    def scenario(self, scenario: Scenario) -> Path:
        return scenario.write(self.root / "scenario.json")

    def request(self, *, timeout: float = 30.0, iteration: int = 1, attempt: int = 1,
                prompt: str = "Fix the failing test.", env: Mapping[str, str] | None = None) -> AgentRequest:
        scratch = self.root / f"scratch-{iteration}-{attempt}"
        scratch.mkdir(exist_ok=True)
        base_env = {"PATH": os.environ["PATH"], "HOME": str(self.root), "PYTHONPATH": _src_path()}
        return AgentRequest(
            prompt=prompt,
            worktree=self.repo,
            log_path=self.root / "logs" / f"agent-{iteration}-{attempt}.jsonl",
            scratch_dir=scratch,
            sandbox=NoSandbox(),
            timeout=timeout,
            run_id="run-test",
            iteration=iteration,
            attempt=attempt,
            env={**base_env, **(env or {})},
            on_event=self.events.append,
        )


def _src_path() -> str:
    import onloop

    return str(Path(onloop.__file__).resolve().parent.parent)
