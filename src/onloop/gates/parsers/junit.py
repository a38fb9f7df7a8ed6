"""JUnit XML reports (pytest `--junitxml`, and most test runners of other languages).

The check id is `classname::name` as the runner wrote it; pytest writes `tests.test_calc` as
classname, so ids stay stable between runs. The report is read from the file the gate wrote (inside
onloop's scratch directory), or from the output itself when the output is the XML (`onloop condense
report.xml`). Parsed with the standard library's XML parser: the input is a test report, and
ElementTree does not expand external entities.

The message is the first line of the `message` attribute (pytest puts the whole assertion
explanation there); the location is the last `path:line:` frame of the text that is in the project
(relative path), else the testcase's `file:line`. A module that failed to import with a SyntaxError
is located by the SyntaxError's own `File "...", line N`.

One check per id, never one per attempt. pytest-rerunfailures writes every attempt as a testcase of
its own under the same id, the superseded ones with no outcome element (they read as passes): the
last testcase of an id is its outcome, and one that passed after earlier attempts says it was flaky.
Maven Surefire's format keeps the attempts inside one testcase instead (`flakyFailure`/`flakyError`
when the test passed in the end, `rerunFailure`/`rerunError` beside the final `failure`); both read
the same way. pytest-repeat's `test_x[1-3]` are distinct ids and stay distinct.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import replace

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers._lint import relative_path, root_of
from onloop.gates.parsers.base import GateOutput
from onloop.gates.parsers.pytest_text import rerun_message, syntax_error

_OUTCOMES = (("failure", CheckStatus.FAILED), ("error", CheckStatus.ERROR), ("skipped", CheckStatus.SKIPPED))
_EARLIER_ATTEMPTS = ("flakyFailure", "flakyError", "rerunFailure", "rerunError")
_TEARDOWN = "failed on teardown with "
_RANK = {CheckStatus.PASSED: 0, CheckStatus.SKIPPED: 1, CheckStatus.FAILED: 2, CheckStatus.ERROR: 3}
_FRAME = re.compile(r"^([^\s:/][^\s:]*):(\d+):", re.MULTILINE)
_E_LINE = re.compile(r"^E +(\S.*)$", re.MULTILINE)


class JunitParser:
    name = "junit"

    def detect(self, output: GateOutput) -> bool:
        path = output.report_path
        if path is not None and path.is_file() and path.stat().st_size > 0:
            return True
        return _looks_like_xml(output.output)

    def parse(self, output: GateOutput) -> list[CheckResult]:
        path = output.report_path
        try:
            if path is not None and path.is_file() and path.stat().st_size > 0:
                root = ET.parse(path).getroot()
            elif _looks_like_xml(output.output):
                root = ET.fromstring(output.output.strip())
            else:
                return []
        except ET.ParseError:
            return []
        return _merge_attempts([_check(case, root_of(output)) for case in root.iter("testcase")])


def _looks_like_xml(text: str) -> bool:
    head = text.lstrip()[:300]
    return head.startswith("<?xml") or head.startswith("<testsuite")


def _merge_attempts(attempts: list[tuple[CheckResult, int]]) -> list[CheckResult]:
    """One check per id, in order of first appearance: the last attempt's unless an earlier testcase of
    the id has a worse outcome written in it, its earlier ones noted.

    `attempts` holds each testcase's check with the number of failed attempts recorded inside it.
    pytest also writes a second testcase for a test whose teardown failed after its call had failed
    (`failed on teardown with ...`): that is the same attempt, and the worse of the two stands.
    """
    last: dict[str, CheckResult] = {}
    earlier: dict[str, int] = {}
    for check, inner in attempts:
        previous = last.get(check.check_id)
        if previous is not None and check.message.startswith(_TEARDOWN):
            check = check if _RANK[check.status] >= _RANK[previous.status] else previous
        elif previous is not None:
            earlier[check.check_id] = earlier.get(check.check_id, 0) + 1
            if previous.status is not CheckStatus.PASSED and _RANK[previous.status] > _RANK[check.status]:
                # Only an attempt written with no outcome (pytest-rerunfailures' superseded ones) gives way:
                # a testcase that failed stays failed, whatever testcase of the same id follows (two tests
                # sharing an id under jest-junit or mocha, or a forged one).
                check = previous
        earlier[check.check_id] = earlier.get(check.check_id, 0) + inner
        last[check.check_id] = check
    return [_noted(check, earlier.get(check_id, 0)) for check_id, check in last.items()]


def _noted(check: CheckResult, reruns: int) -> CheckResult:
    if not reruns:
        return check
    if not check.status.failing:
        return replace(check, message=rerun_message(reruns))
    note = f"failed on every attempt ({reruns + 1})"
    return replace(check, detail="\n".join(part for part in (check.detail, note) if part))


def _check(case: ET.Element, root: str | None) -> tuple[CheckResult, int]:
    classname = case.get("classname", "")
    name = case.get("name", "")
    check_id = f"{classname}::{name}" if classname else name
    location = f"{case.get('file', '')}:{case.get('line', '')}".strip(":")
    reruns = sum(len(case.findall(tag)) for tag in _EARLIER_ATTEMPTS)
    for tag, status in _OUTCOMES:
        element = case.find(tag)
        if element is None:
            continue
        text = (element.text or "").strip()
        e_lines = _E_LINE.findall(text)
        message = (element.get("message") or "").strip().split("\n")[0] or (e_lines[0] if e_lines else "")
        if not message and text:
            message = text.splitlines()[-1]
        frames = _FRAME.findall(text)
        if frames:
            location = f"{frames[-1][0]}:{frames[-1][1]}"
        syntax = syntax_error(e_lines)
        if syntax is not None:
            message, location = syntax[0], f"{_relative(syntax[1], root, check_id)}:{syntax[2]}"
        detail = "\n".join(e_lines[:12] or text.splitlines()[-12:])
        return CheckResult(check_id, status, message[:300], location, detail), reruns
    return CheckResult(check_id, CheckStatus.PASSED, location=location), reruns


def _relative(path: str, root: str | None, check_id: str) -> str:
    """`path` relative to the gate's directory, else to what precedes the module pytest names in the id
    of a collection error (`tests.test_x` for `/abs/tests/test_x.py`)."""
    if root is not None or not path.startswith("/"):
        return relative_path(path, root)
    module = check_id.replace(".", "/") + ".py"
    if path.endswith("/" + module):
        return relative_path(path, path[:-len(module) - 1])
    return path
