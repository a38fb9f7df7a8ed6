"""Python's unittest verbose output (`python -m unittest -v`): one line per test.

Lines look like `test_add (tests.test_calc.CalcTest.test_add) ... ok` (or `FAIL`, `ERROR`,
`skipped 'why'`, `expected failure`), with the status on a later line when the test printed something
in between; the failure blocks after the `=====` separators give the message (and count as a failure).
"""

from __future__ import annotations

import re

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers._lint import sample
from onloop.gates.parsers.base import GateOutput

_START = re.compile(r"^(?P<name>[\w.]+) \((?P<where>[\w.]+)\)(?P<rest>.*)$")
_OUTCOME = re.compile(r"^(?P<outcome>ok|FAIL|ERROR|skipped.*|expected failure|unexpected success)$")
_BLOCK = re.compile(
    r"^={50,}\n(?P<kind>FAIL|ERROR): (?P<name>[\w.]+) \((?P<where>[\w.]+)\)\n-{50,}\n"
    r"(?P<body>.*?)(?=^={50,}|^-{50,}\nRan )",
    re.MULTILINE | re.DOTALL,
)
_STATUS = {"ok": CheckStatus.PASSED, "FAIL": CheckStatus.FAILED, "ERROR": CheckStatus.ERROR}
_RANK = {CheckStatus.PASSED: 0, CheckStatus.SKIPPED: 1, CheckStatus.FAILED: 2, CheckStatus.ERROR: 3}


class UnittestParser:
    name = "unittest"

    def detect(self, output: GateOutput) -> bool:
        text = sample(output.output)
        return bool(re.search(r"^Ran \d+ tests? in ", text, re.MULTILINE)) and bool(_outcomes(text))

    def parse(self, output: GateOutput) -> list[CheckResult]:
        details = {_id(m["where"], m["name"]): (m["kind"], m["body"].strip()) for m in _BLOCK.finditer(output.output)}
        statuses = _outcomes(output.output)
        for check_id, (kind, _) in details.items():  # a failure block is evidence too: the worse wins
            _worst(statuses, check_id, _STATUS[kind])
        checks = []
        for check_id, status in statuses.items():
            body = details.get(check_id, ("", ""))[1]
            lines = [line for line in body.splitlines() if line.strip()]
            message = lines[-1].strip() if lines else ""
            checks.append(CheckResult(check_id, status, message[:300], _location(body), "\n".join(lines[-12:])))
        return checks


def _outcomes(text: str) -> dict[str, CheckStatus]:
    """Each test's status from its progress line. What the test prints (its own output, a warning on
    stderr) can come between `test_x (mod.C.test_x) ... ` and the status, which then stands on a line
    of its own; every status line seen before the next test counts, and the worst wins."""
    statuses: dict[str, CheckStatus] = {}
    pending: str | None = None
    for line in text.splitlines():
        start = _START.match(line)
        if start:
            pending = _id(start["where"], start["name"])
            line = start["rest"]
        if pending is None:
            continue
        if " ... " in line:
            line = line.rsplit(" ... ", 1)[1]
        elif line.endswith(" ..."):
            continue
        outcome = _OUTCOME.match(line.strip())
        if outcome:
            _worst(statuses, pending, _status(outcome["outcome"]))
    return statuses


def _status(outcome: str) -> CheckStatus:
    if outcome in _STATUS:
        return _STATUS[outcome]
    if outcome.startswith("skipped"):
        return CheckStatus.SKIPPED
    return CheckStatus.PASSED if outcome == "expected failure" else CheckStatus.FAILED


def _worst(statuses: dict[str, CheckStatus], check_id: str, status: CheckStatus) -> None:
    if check_id not in statuses or _RANK[status] > _RANK[statuses[check_id]]:
        statuses[check_id] = status


_FAILED_IMPORT = "unittest.loader._FailedTest."


def _id(where: str, name: str) -> str:
    # A module that failed to import is its own check, named by the module (`tests.test_spec`), so
    # that its tests (`tests.test_spec.Case.test_x`) are found under it once it imports.
    if where.startswith(_FAILED_IMPORT):
        return where[len(_FAILED_IMPORT):]
    # Python 3.11 prints "module.Class.test_name"; older ones print "module.Class".
    return where if where.endswith("." + name) else f"{where}.{name}"


def _location(body: str) -> str:
    frames = re.findall(r'File "([^"]+)", line (\d+)', body)
    for path, line in reversed(frames):
        if "/unittest/" not in path:
            return f"{path}:{line}"
    return ""
