"""Python's unittest verbose output (`python -m unittest -v`): one line per test.

Lines look like `test_add (tests.test_calc.CalcTest.test_add) ... ok` (or `FAIL`, `ERROR`,
`skipped 'why'`, `expected failure`); the failure blocks after the `=====` separators give the message.
"""

from __future__ import annotations

import re

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers._lint import sample
from onloop.gates.parsers.base import GateOutput

_LINE = re.compile(
    r"^(?P<name>\w+) \((?P<where>[\w.]+)\)(?:\n.*?)? \.\.\. "
    r"(?P<outcome>ok|FAIL|ERROR|skipped.*|expected failure|unexpected success)$",
    re.MULTILINE,
)
_BLOCK = re.compile(
    r"^={50,}\n(?P<kind>FAIL|ERROR): (?P<name>\w+) \((?P<where>[\w.]+)\)\n-{50,}\n"
    r"(?P<body>.*?)(?=^={50,}|^-{50,}\nRan )",
    re.MULTILINE | re.DOTALL,
)
_STATUS = {"ok": CheckStatus.PASSED, "FAIL": CheckStatus.FAILED, "ERROR": CheckStatus.ERROR}


class UnittestParser:
    name = "unittest"

    def detect(self, output: GateOutput) -> bool:
        text = sample(output.output)
        return bool(re.search(r"^Ran \d+ tests? in ", text, re.MULTILINE)) and bool(_LINE.search(text))

    def parse(self, output: GateOutput) -> list[CheckResult]:
        details = {_id(m["where"], m["name"]): m["body"].strip() for m in _BLOCK.finditer(output.output)}
        checks: dict[str, CheckResult] = {}
        for match in _LINE.finditer(output.output):
            check_id = _id(match["where"], match["name"])
            outcome = match["outcome"]
            status = _STATUS.get(outcome, CheckStatus.SKIPPED if outcome.startswith("skipped") else None)
            if status is None:
                status = CheckStatus.PASSED if outcome == "expected failure" else CheckStatus.FAILED
            body = details.get(check_id, "")
            lines = [line for line in body.splitlines() if line.strip()]
            message = lines[-1].strip() if lines else ""
            location = _location(body)
            checks[check_id] = CheckResult(check_id, status, message[:300], location, "\n".join(lines[-12:]))
        return list(checks.values())


def _id(where: str, name: str) -> str:
    # Python 3.11 prints "module.Class.test_name"; older ones print "module.Class".
    return where if where.endswith("." + name) else f"{where}.{name}"


def _location(body: str) -> str:
    frames = re.findall(r'File "([^"]+)", line (\d+)', body)
    for path, line in reversed(frames):
        if "/unittest/" not in path:
            return f"{path}:{line}"
    return ""
