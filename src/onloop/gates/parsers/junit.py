"""JUnit XML reports (pytest `--junitxml`, and most test runners of other languages).

The check id is `classname::name` as the runner wrote it; pytest writes `tests.test_calc` as
classname, so ids stay stable between runs. The report is read from the file the gate wrote (inside
onloop's scratch directory), or from the output itself when the output is the XML (`onloop condense
report.xml`). Parsed with the standard library's XML parser: the input is a test report, and
ElementTree does not expand external entities.

The message is the first line of the `message` attribute (pytest puts the whole assertion
explanation there); the location is the last `path:line:` frame of the text that is in the project
(relative path), else the testcase's `file:line`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers.base import GateOutput

_OUTCOMES = (("failure", CheckStatus.FAILED), ("error", CheckStatus.ERROR), ("skipped", CheckStatus.SKIPPED))
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
        return [_check(case) for case in root.iter("testcase")]


def _looks_like_xml(text: str) -> bool:
    head = text.lstrip()[:300]
    return head.startswith("<?xml") or head.startswith("<testsuite")


def _check(case: ET.Element) -> CheckResult:
    classname = case.get("classname", "")
    name = case.get("name", "")
    check_id = f"{classname}::{name}" if classname else name
    location = f"{case.get('file', '')}:{case.get('line', '')}".strip(":")
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
        detail = "\n".join(e_lines[:12] or text.splitlines()[-12:])
        return CheckResult(check_id, status, message[:300], location, detail)
    return CheckResult(check_id, CheckStatus.PASSED, location=location)
