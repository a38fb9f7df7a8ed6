"""Running gates: orchestrator-owned checks, each a command with a time limit, in the sandbox.

The agent never runs the gates that decide "done": onloop does, after the agent has exited, on the
worktree as the agent left it. `{junit}` in a gate's command is replaced by a report path in onloop's
scratch directory (writable inside the sandbox, invisible to later agents), so pytest and friends can
report per test. The output goes to a log file in the run directory; its head and tail are parsed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from onloop.config import GateConfig
from onloop.errors import GateError
from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers import GateOutput, parse_gate_output
from onloop.process import Limits, ProcessSpec, Sandbox, run_process

_PARSE_HEAD = 2_000_000
_PARSE_TAIL = 2_000_000


@dataclass(frozen=True, slots=True)
class GateRun:
    gate: str
    exit_code: int | None
    timed_out: bool
    duration: float
    checks: tuple[CheckResult, ...]
    log_path: Path | None
    required: bool = True

    @property
    def failing(self) -> frozenset[str]:
        return frozenset(c.check_id for c in self.checks if c.status.failing)

    @property
    def passed(self) -> bool:
        return not self.failing

    def check(self, check_id: str) -> CheckResult | None:
        return next((c for c in self.checks if c.check_id == check_id), None)


def run_gate(
    name: str,
    config: GateConfig,
    *,
    worktree: Path,
    scratch: Path,
    log_dir: Path,
    sandbox: Sandbox,
    env: Mapping[str, str],
    label: str,
    limits: Limits | None = None,
) -> GateRun:
    """Run one gate and parse its checks. Raises GateError only if it cannot be started at all."""
    scratch.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    report = scratch / f"{name}-{label}.junit.xml"
    report.unlink(missing_ok=True)
    argv = tuple(part.replace("{junit}", str(report)) for part in config.command or ())
    log_path = log_dir / f"gate-{name}-{label}.log"
    log_path.unlink(missing_ok=True)
    spec = ProcessSpec(argv=argv, cwd=worktree, env=env, timeout=config.timeout, writable=(scratch,),
                       network=False, limits=limits or Limits(), label=f"gate {name}")
    try:
        outcome = run_process(spec, sandbox, log_path=log_path)
    except (FileNotFoundError, PermissionError) as exc:
        raise GateError(f"gate {name!r} cannot be started: {exc}") from exc
    output = GateOutput(name, outcome.exit_code, outcome.timed_out, _read_for_parsing(log_path),
                        report if report.exists() else None, cwd=worktree)
    checks = tuple(parse_gate_output(output, config.format))
    if outcome.timed_out:
        checks = (*checks, CheckResult(f"{name}:timeout", CheckStatus.FAILED,
                                       f"gate timed out after {config.timeout:.0f}s"))
    return GateRun(name, outcome.exit_code, outcome.timed_out, outcome.duration, checks, log_path, config.required)


def _read_for_parsing(path: Path) -> str:
    if not path.exists():
        return ""
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size <= _PARSE_HEAD + _PARSE_TAIL:
            data = handle.read()
        else:
            head = handle.read(_PARSE_HEAD)
            handle.seek(size - _PARSE_TAIL)
            data = head + b"\n[... output cut by onloop ...]\n" + handle.read()
    return data.decode("utf-8", "replace")


def run_differential_gate(name: str, config: GateConfig, *, worktree: Path, sandbox: Sandbox) -> GateRun:
    """A port's reference and candidate on the same inputs; each input is a check (a mismatch fails)."""
    from onloop.gates.differential import DiffRun, Normalise, cases_from_files, run_differential

    files = sorted({path for pattern in config.inputs for path in worktree.glob(pattern) if path.is_file()})
    n = config.normalise
    run = DiffRun(tuple(config.reference or ()), tuple(config.candidate or ()), worktree,
                  Normalise(n.strip_whitespace, tuple((pattern, repl) for pattern, repl in n.replacements),
                            n.sort_lines, n.json_canonical), timeout=config.timeout, name=name)
    started = time.monotonic()
    checks = run_differential(run, cases_from_files(files, worktree), sandbox) if files else [
        CheckResult(f"{name}:inputs", CheckStatus.FAILED, f"no input file matches {config.inputs}")]
    failed = any(c.status.failing for c in checks)
    return GateRun(name, int(failed), False, time.monotonic() - started, tuple(checks), None, config.required)


def run_judge_gate(name: str, config: GateConfig, subject: str) -> GateRun:
    """A model grades `subject` (the run's diff) against the rubric; a model failure is a failing check."""
    from onloop.gates.judge import JudgeSpec, run_judge
    from onloop.models import create_model
    from onloop.models.base import ModelError

    assert config.model is not None and config.rubric is not None
    started = time.monotonic()
    try:
        checks = run_judge(create_model(config.model, key=f"gates.{name}.model.provider"),
                           JudgeSpec(config.rubric, name=name), subject)
    except ModelError as exc:
        checks = [CheckResult(f"{name}:error", CheckStatus.FAILED, f"the judge's model failed: {exc}"[:300])]
    failed = any(c.status.failing for c in checks)
    return GateRun(name, int(failed), False, time.monotonic() - started, tuple(checks), None, config.required)
