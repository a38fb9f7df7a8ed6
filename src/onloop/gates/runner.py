"""Running gates: orchestrator-owned checks, each a command with a time limit, in the sandbox.

The agent never runs the gates that decide "done": onloop does, after the agent has exited, in a
sealed checkout of the committed candidate (`onloop.gates.sealed`), never in the agent's worktree.

Where the per-check results come from, most trusted first (the receipt names it, `GateRun.report`):
- pytest, wherever the argv runs it: onloop's own plugin reports over a private socket the code
  under test's subprocesses cannot find (`onloop.gates.report`); nothing on disk to rewrite;
- `{junit}` in a command: a report file in a scratch directory, at the same path on a re-run. The code
  under test can write it, and the receipt says so;
- otherwise the output, parsed by `format` (which the code under test can also print).

A gate that could not produce a result is *broken*, never a failing check: it could not start
(exit 126 or 127, or the sandbox's own "failed to execute"), it was killed (timeout, a resource
limit, output over the cap), its runner reported an error of its own (pytest exit 3, 4, 5, or 2
without collection errors), or the parser it was configured with cannot read its failing output. A
plain exit-code gate that ran and exited non-zero is one failing check, `<gate>:command`.
"""

from __future__ import annotations

import re
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from onloop.config import GateConfig
from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers import GateOutput, parse_gate_output
from onloop.gates.terminal import plain_env, strip_escapes
from onloop.models.metered import Meter
from onloop.process import Limits, ProcessResult, ProcessSpec, Sandbox, run_process

# What the sandbox's own layers print when the command itself cannot run (bwrap, prlimit, the pids
# cgroup shell, the Python limits fallback): the gate is broken, not failing.
_CANNOT_RUN = re.compile(r"^(?:bwrap: (?:execvp|Can't)|prlimit: failed to execute|onloop: cannot (?:join|execute))",
                         re.MULTILINE)
# What a write into the read-only checkout fails with (Python's OSError, node's EROFS, a shell's message).
_READ_ONLY = re.compile(r"(?:Read-only file system|EROFS)\b[^\n']*(?:'([^'\n]{1,300})')?")
_LIMIT_SIGNALS = {signal.SIGKILL: "killed (SIGKILL: a memory or process limit?)",
                  signal.SIGXCPU: "killed by the CPU time limit", signal.SIGXFSZ: "killed by the file size limit"}

# Parsers of tools that report problems only (a fixed problem is simply absent), not every check they ran.
DIAGNOSTIC_FORMATS = frozenset({"ruff", "mypy", "pyright", "eslint", "tsc"})
TEST_RUNNERS = frozenset({"pytest", "py.test", "unittest", "jest", "vitest", "mocha", "tox", "nox", "make", "npm",
                          "yarn", "pnpm", "cargo", "go"})
REPORT_PLUGIN = "onloop pytest plugin over a private socket"
REPORT_JUNIT = "junit file (the code under test can write it)"
REPORT_OUTPUT = "output (the code under test can print it)"


@dataclass(frozen=True, slots=True)
class GateRun:
    gate: str
    exit_code: int | None
    timed_out: bool
    duration: float
    checks: tuple[CheckResult, ...]
    log_path: Path | None
    required: bool = True
    broken: str | None = None  # why this run is not a result (None: it is one)
    report: str = REPORT_OUTPUT  # where the per-check results came from
    plugins: tuple[str, ...] = ()  # project files pytest loaded as plugins (conftest.py, pytest_plugins)
    diagnostics: bool = False  # a linter or type checker: it reports problems only, a fixed one is absent

    @property
    def failing(self) -> frozenset[str]:
        return frozenset(c.check_id for c in self.checks if c.status.failing)

    @property
    def passed(self) -> bool:
        return not self.failing and self.broken is None

    def check(self, check_id: str) -> CheckResult | None:
        return next((c for c in self.checks if c.check_id == check_id), None)


@dataclass(frozen=True, slots=True)
class GateSetting:
    """Where and how one command gate runs: its sealed checkout, sandbox and environment."""

    root: Path  # the sealed checkout (the gate's cwd)
    scratch: Path  # a private writable dir, the same path on a re-run ({junit} lives here)
    log_dir: Path
    sandbox: Sandbox
    env: Mapping[str, str] = field(default_factory=dict)
    limits: Limits = Limits()
    plugin_module: str | None = None  # the module name of onloop's pytest plugin for this run
    plugin_home: Path | None = None  # where the plugin's copy is put: read-only to the gate, never its scratch
    writable: tuple[Path, ...] = ()  # directories of the (read-only) checkout the gate may write
    private: tuple[Path, ...] = ()  # directories of the checkout that get an empty tmpfs of their own


def run_gate(name: str, config: GateConfig, setting: GateSetting, label: str) -> GateRun:
    """Run one command gate and read its checks. Never raises for a gate that cannot run: that is a
    broken run. `label` names only the log file (outside the sandbox): a re-run looks the same inside."""
    from onloop.gates.report import PytestChannel

    _fresh_dir(setting.scratch)
    setting.log_dir.mkdir(parents=True, exist_ok=True)
    report = setting.scratch / "report.junit.xml"
    argv = tuple(part.replace("{junit}", str(report)) for part in config.command or ())
    log_path = setting.log_dir / f"gate-{name}-{label}.log"
    log_path.unlink(missing_ok=True)
    plugin_home = setting.plugin_home or setting.scratch.parent / f"{setting.scratch.name}-plugin"
    _fresh_dir(plugin_home)
    with PytestChannel(plugin_home=plugin_home, module=setting.plugin_module) as channel:
        wrapped = channel.wrap_argv(argv)
        env = plain_env(dict(setting.env))
        fds: tuple[int, ...] = ()
        if wrapped is not None:
            # Every test runs even when a module fails to collect (the TDD case): the baseline then
            # knows every check, and a collection error is one failing check, not a blackout.
            argv, fds = (*wrapped, "--continue-on-collection-errors"), (channel.child_fd,)
            env.update(channel.env(env.get("PYTHONPATH")))
            channel.start()
        spec = ProcessSpec(argv=argv, cwd=setting.root, env=env, timeout=config.timeout,
                           writable=(setting.scratch, *setting.writable), readable=(plugin_home,),
                           tmpfs=setting.private,
                           network=False, limits=setting.limits, label=f"gate {name}", pass_fds=fds)
        try:
            outcome = run_process(spec, setting.sandbox, log_path=log_path)
        except OSError as exc:
            return GateRun(name, None, False, 0.0, (), log_path, config.required,
                           broken=f"the command cannot be started: {exc}")
        plugin = channel.finish(outcome.exit_code) if wrapped is not None else None
    text = _read_for_parsing(log_path)
    if plugin is not None:
        broken = _process_broken(outcome, text, config) or _with_evidence(plugin.broken, text, setting.root)
        return GateRun(name, outcome.exit_code, outcome.timed_out, outcome.duration, _plain(plugin.checks), log_path,
                       config.required, broken, REPORT_PLUGIN, plugin.plugins)
    junit = report if report.is_file() else None
    output = GateOutput(name, outcome.exit_code, outcome.timed_out, text, junit, cwd=setting.root)
    checks = tuple(parse_gate_output(output, config.format))
    broken = _process_broken(outcome, text, config) or _unreadable(output, config, checks) or _incomplete(name, checks)
    return GateRun(name, outcome.exit_code, outcome.timed_out, outcome.duration, checks, log_path, config.required,
                   broken, REPORT_JUNIT if junit else REPORT_OUTPUT, diagnostics=is_diagnostic_gate(config))


def _plain(checks: Sequence[CheckResult]) -> tuple[CheckResult, ...]:
    """Checks whose texts carry no terminal escapes (a test's own message may be coloured)."""
    return tuple(replace(c, message=strip_escapes(c.message), detail=strip_escapes(c.detail)) for c in checks)


def is_diagnostic_gate(config: GateConfig) -> bool:
    """A linter's or type checker's gate, by its configuration: its format, or the tool its argv runs.
    Never by the output (what the code under test prints must not turn a test gate into one where an
    absent check counts as fixed)."""
    if config.format in DIAGNOSTIC_FORMATS:
        return True
    if config.format != "auto":
        return False
    tools = {PurePosixPath(token).name for token in config.command or ()}
    return bool(tools & DIAGNOSTIC_FORMATS) and not tools & TEST_RUNNERS


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


def _process_broken(outcome: ProcessResult, text: str, config: GateConfig) -> str | None:
    """Why the process itself gave no result: not started, killed, cut off."""
    if outcome.timed_out:
        return f"timed out after {config.timeout:.0f}s (gates.*.timeout)"
    if outcome.output_truncated:
        return f"its output went over the cap of {outcome.output_bytes:,} bytes and was cut (policy.limits.output)"
    code = outcome.exit_code
    first = _first_line(text)
    if code in (126, 127) or _CANNOT_RUN.search(text[:4000]):
        return f"the command could not run (exit {code}): {first}"
    refused = _READ_ONLY.search(text) if code not in (0, None) else None
    if refused:
        return (f"it tried to write {refused.group(1) or 'into the checkout'}, which gates see read-only: list the "
                "directory in gates.<name>.writable (\".\" for the whole checkout)")
    if code is not None and code < 0 and -code in _LIMIT_SIGNALS:
        return _LIMIT_SIGNALS[signal.Signals(-code)]
    return None


def _with_evidence(reason: str | None, text: str, root: Path) -> str | None:
    """A broken run's reason with the runner's own first error lines (the operator needs them to fix
    it), the sealed checkout's path shown as `.`."""
    if reason is None:
        return None
    from onloop.gates.parsers.exitcode import error_lines

    lines = [line.replace(str(root), ".") for line in error_lines(text, limit=3)]
    return f"{reason}: {' | '.join(lines)}"[:800] if lines else reason


def _unreadable(output: GateOutput, config: GateConfig, checks: Sequence[CheckResult]) -> str | None:
    """A parser chosen by the operator that finds nothing in a failing output: the output is not what
    the gate was meant to produce (a crash before the tool ran), so the fallback check means nothing."""
    if config.format in ("auto", "exit") or output.exit_code in (0, None):
        return None
    parsed = [c for c in checks if not c.check_id.endswith(":command")]
    if parsed:
        return None
    return f"exit code {output.exit_code} and no {config.format} output to read: {_first_line(output.output)}"


def _incomplete(name: str, checks: Sequence[CheckResult]) -> str | None:
    """A failing run whose output is not a whole run's (no final summary): no verdict on what it did
    not show. Its checks stay, as the ids it saw."""
    found = next((c for c in checks if c.check_id == f"{name}:incomplete"), None)
    if found is None:
        return None
    return (f"{found.message} ({sum(1 for c in checks if c is not found)} checks seen; a runner that prints no final "
            "summary by design, such as pytest -qq, must be made to print one, e.g. with -q)")


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:300] if lines else "(no output)"


def _read_for_parsing(path: Path) -> str:
    """The gate's whole output, as a parser reads it: decoded, terminal escapes stripped. Never cut (the
    process's output cap, `policy.limits.output`, already bounds it, and a run over the cap is broken):
    a cut in the middle would hide different checks on different runs, and a check out of view would
    read as gone."""
    if not path.exists():
        return ""
    return strip_escapes(path.read_bytes().decode("utf-8", "replace"))


def worst_of(first: GateRun, second: GateRun) -> GateRun:
    """Two runs of the same gate merged check by check, the worse outcome winning: a check that failed
    in either run is failing (unless proven flaky elsewhere)."""
    rank = {CheckStatus.PASSED: 0, CheckStatus.SKIPPED: 1, CheckStatus.REFERENCE_FAILED: 1, CheckStatus.FAILED: 2,
            CheckStatus.ERROR: 3}
    merged: dict[str, CheckResult] = {}
    for check in (*first.checks, *second.checks):
        old = merged.get(check.check_id)
        if old is None or rank[check.status] > rank[old.status]:
            merged[check.check_id] = check
    return replace(second, checks=tuple(merged.values()), broken=first.broken or second.broken)


def run_judge_gate(name: str, config: GateConfig, subject: str, meter: Meter | None = None) -> GateRun:
    """A model grades `subject` (the run's diff) against the rubric. Its calls go through the run's
    `meter` (paid from the run's budget, rate limits waited out); a model that gives no verdict (an
    error, a limit beyond what the run may wait, the budget spent) makes the gate broken, not failing.

    A judge never passes on part of the change: a diff longer than one call reads is judged in parts
    that together hold all of it (`judge_parts`), and every part must pass."""
    from onloop.gates.judge import JudgeSpec, run_judge
    from onloop.models import create_model
    from onloop.models.base import ModelError

    assert config.model is not None and config.rubric is not None
    started = time.monotonic()
    spec = JudgeSpec(config.rubric, name=name)
    parts = judge_parts(subject, spec.max_subject_chars - 200)  # room for the part header: never cut
    checks: list[CheckResult] = []
    try:
        model = create_model(config.model, key=f"gates.{name}.model.provider")
        if meter is not None:
            model = meter.model(model, f"judge {name}")
        for number, part in enumerate(parts, 1):
            header = f"[part {number} of {len(parts)} of the change; the other parts are judged apart]\n"
            found = run_judge(model, spec, part if len(parts) == 1 else header + part)
            suffix = "" if len(parts) == 1 else f":part-{number}"
            checks += [replace(c, check_id=c.check_id + suffix) for c in found]
    except ModelError as exc:
        return GateRun(name, None, False, time.monotonic() - started, tuple(checks), None, config.required,
                       broken=f"the judge's model gave no verdict: {exc}"[:800], report=REPORT_JUDGE)
    failed = any(c.status.failing for c in checks)
    return GateRun(name, int(failed), False, time.monotonic() - started, tuple(checks), None, config.required,
                   report=REPORT_JUDGE)


REPORT_JUDGE = "a model's validated verdict"


def judge_parts(diff: str, budget: int) -> list[str]:
    """A unified diff in parts of at most `budget` characters that together hold all of it: whole files
    where they fit, a longer file's diff by its lines (a longer line by pieces), never cut away."""
    pieces: list[str] = []
    for piece in (f for f in re.split(r"(?m)^(?=diff --git )", diff) if f):
        pieces += [piece] if len(piece) <= budget else _by_lines(piece, budget)
    parts: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + len(piece) > budget:
            parts.append(current)
            current = ""
        current += piece
    return [*parts, current] if current or not parts else parts


def _by_lines(text: str, budget: int) -> list[str]:
    pieces: list[str] = []
    for line in text.splitlines(keepends=True):
        pieces += [line[i:i + budget] for i in range(0, len(line), budget)] or [line]
    return pieces


def run_differential_gate(name: str, config: GateConfig, *, reference_root: Path, candidate_root: Path,
                          reference_sandbox: Sandbox, candidate_sandbox: Sandbox, scratch: Path) -> GateRun:
    """A port's reference (in a checkout of the base commit) and candidate (in the candidate's, with
    the reference's files masked) on the same inputs, taken from the base; each input is a check."""
    from onloop.gates.differential import DiffCase, DiffRun, Normalise, run_differential

    started = time.monotonic()
    inputs = sorted({path.relative_to(reference_root).as_posix() for pattern in config.inputs
                     for path in reference_root.glob(pattern) if path.is_file()})
    if not inputs:
        return GateRun(name, None, False, 0.0, (), None, config.required,
                       broken=f"no input file matches {config.inputs} on the base commit", report=REPORT_DIFFERENTIAL)
    n = config.normalise
    run = DiffRun(tuple(config.reference or ()), tuple(config.candidate or ()), reference_cwd=reference_root,
                  candidate_cwd=candidate_root,
                  normalise=Normalise(n.strip_whitespace, tuple((p, r) for p, r in n.replacements), n.sort_lines,
                                      n.json_canonical),
                  timeout=config.timeout, max_output=config.max_output, name=name,
                  candidate_masked=reference_masks(config, reference_root, candidate_root))
    _fresh_dir(scratch)
    checks = run_differential(run, [DiffCase(rel, input_rel=rel) for rel in inputs], reference_sandbox,
                              candidate_sandbox, scratch)
    failed = any(c.status.failing for c in checks)
    return GateRun(name, int(failed), False, time.monotonic() - started, tuple(checks), None, config.required,
                   report=REPORT_DIFFERENTIAL)


REPORT_DIFFERENTIAL = "outputs compared whole by onloop (reference on the base commit)"


def reference_masks(config: GateConfig, reference_root: Path, candidate_root: Path) -> tuple[Path, ...]:
    """What the candidate must not see or call: the reference's files. `reference_files` when given
    (globs in the repository, or absolute host paths); otherwise the repository paths the reference argv
    names (their directory, unless it is the root) and an argv[0] given as a path outside it. A
    reference on the system PATH under a bare name (`wc`) is not masked unless listed."""
    masked: list[Path] = []
    if config.reference_files is not None:
        for entry in config.reference_files:
            if entry.startswith("/"):
                masked.append(Path(entry))
            else:
                masked += [candidate_root / p.relative_to(reference_root) for p in reference_root.glob(entry)]
        return tuple(dict.fromkeys(masked))
    argv = config.reference or []
    for token in argv:
        rel = token.removeprefix("./")
        if not rel or rel.startswith("/") or "{input}" in rel or not (reference_root / rel).exists():
            continue
        parent = Path(rel).parent
        masked.append(candidate_root / (rel if parent == Path(".") else parent))
    candidate = config.candidate or []
    if argv and argv[0].startswith("/") and not (candidate and _same_file(argv[0], candidate[0])):
        masked.append(Path(argv[0]))  # a program of its own; an interpreter both sides run is not the reference
    return tuple(dict.fromkeys(masked))


def _same_file(first: str, second: str) -> bool:
    found = shutil.which(second) or second
    try:
        return Path(first).resolve() == Path(found).resolve()
    except OSError:
        return False
