"""Gate output parsers, looked up by name; `format = "auto"` tries each parser's `detect` in order."""

from __future__ import annotations

from collections.abc import Callable

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers.base import GateOutput, GateParser
from onloop.plugins import Registry

__all__ = ["GateOutput", "GateParser", "detect_format", "parse_gate_output", "registry"]

ParserFactory = Callable[[], GateParser]

# Order matters for auto-detection: the most specific formats first, the generic fallback last.
# JSON formats are recognised by their keys and go first; then junit (a report file or XML text);
# text formats whose summary lines are distinctive; tsc last among them because its line shape is the
# loosest. pytest's text parser must come after junit: a gate that wrote a report is better read from it.
_BUILTIN_ORDER = ("pyright", "eslint", "go", "junit", "ruff", "mypy", "pytest", "unittest", "cargo", "tsc", "exit")


def register_builtin(register: Callable[[str, ParserFactory], None]) -> None:
    from onloop.gates.parsers import (
        cargo_test,
        eslint,
        exitcode,
        go_test,
        junit,
        mypy,
        pyright,
        pytest_text,
        ruff,
        tsc,
        unittest_text,
    )

    register("junit", junit.JunitParser)
    register("pytest", pytest_text.PytestTextParser)
    register("unittest", unittest_text.UnittestParser)
    register("ruff", ruff.RuffParser)
    register("mypy", mypy.MypyParser)
    register("pyright", pyright.PyrightParser)
    register("eslint", eslint.EslintParser)
    register("tsc", tsc.TscParser)
    register("cargo", cargo_test.CargoTestParser)
    register("go", go_test.GoTestParser)
    register("exit", exitcode.ExitCodeParser)


registry: Registry[ParserFactory] = Registry("gate_parsers", register_builtin)


def _auto_order() -> list[str]:
    names = registry.names()
    first = [n for n in _BUILTIN_ORDER if n in names and n != "exit"]
    middle = [n for n in names if n not in _BUILTIN_ORDER]
    return first + middle + ["exit"]


def detect_format(output: GateOutput) -> str:
    """The name of the first parser (in auto-detection order) that recognises the output."""
    for name in _auto_order():
        if registry.get(name)().detect(output):
            return name
    return "exit"


def parse_gate_output(output: GateOutput, fmt: str = "auto") -> list[CheckResult]:
    """Checks from a gate's output. Never empty: falls back to one check per command (the exit code).

    A failing (or, for a log file, unknown) test runner's output that is not the output of a whole run
    (killed, cut, stopped early: no final summary) gets the failing check `<gate>:incomplete` beside the
    checks it did show: what was not seen is never read as passed. A run that exited 0 is not marked:
    `pytest -qq` prints no final summary by design, and a check missing from a passing run is already a
    failure when the baseline had it (baseline comparison)."""
    used = fmt
    if fmt != "auto":
        checks = registry.get(fmt, key=f"gates.{output.gate}.format")().parse(output)
    else:
        checks = []
        for name in _auto_order():
            parser = registry.get(name)()
            if parser.detect(output):
                checks = parser.parse(output)
                if checks:
                    used = name
                    break
    incomplete = _incomplete(output, used)
    if incomplete is not None:
        checks = [*checks, incomplete]
    if not checks or (output.exit_code not in (0, None) and not any(c.status.failing for c in checks)):
        # A gate that failed without a failing check still failed: record it as a command-level check
        # so a crash after the report was written (or a non-test failure) is never read as green.
        checks = [*checks, *registry.get("exit")().parse(output)]
    return checks


def _incomplete(output: GateOutput, used: str) -> CheckResult | None:
    from onloop.gates.parsers import pytest_text, unittest_text

    readers = {"pytest": pytest_text.incomplete_reason, "unittest": unittest_text.incomplete_reason}
    if used not in readers or output.report_path is not None or output.exit_code == 0:
        return None
    reason = readers[used](output.output)
    if reason is None:
        return None
    return CheckResult(f"{output.gate}:incomplete", CheckStatus.FAILED, f"incomplete output: {reason}"[:300])


def command_check(output: GateOutput) -> CheckResult:
    status = CheckStatus.PASSED if output.exit_code == 0 and not output.timed_out else CheckStatus.FAILED
    return CheckResult(f"{output.gate}:command", status, _first_error_line(output))


def _first_error_line(output: GateOutput) -> str:
    if output.timed_out:
        return "timed out"
    if output.exit_code == 0:
        return ""
    for line in output.output.splitlines():
        lowered = line.lower()
        if any(word in lowered for word in ("error", "fail", "exception", "traceback")):
            return line.strip()[:300]
    lines = [line for line in output.output.splitlines() if line.strip()]
    return (lines[-1].strip()[:300] if lines else f"exit code {output.exit_code}")
