"""JUnit XML reports (pytest `--junitxml`, and most test runners of other languages).

The check id is `classname::name` as the runner wrote it; pytest writes `tests.test_calc` as
classname, so ids stay stable between runs. Parsed with the standard library's XML parser on a file the
gate wrote inside onloop's scratch directory (not agent-controlled input reaching the host).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers.base import GateOutput

_OUTCOMES = (("failure", CheckStatus.FAILED), ("error", CheckStatus.ERROR), ("skipped", CheckStatus.SKIPPED))


class JunitParser:
    name = "junit"

    def detect(self, output: GateOutput) -> bool:
        path = output.report_path
        return path is not None and path.is_file() and path.stat().st_size > 0

    def parse(self, output: GateOutput) -> list[CheckResult]:
        if not self.detect(output):
            return []
        assert output.report_path is not None
        try:
            root = ET.parse(output.report_path).getroot()
        except ET.ParseError:
            return []
        return [_check(case) for case in root.iter("testcase")]


def _check(case: ET.Element) -> CheckResult:
    classname = case.get("classname", "")
    name = case.get("name", "")
    check_id = f"{classname}::{name}" if classname else name
    location = f"{case.get('file', '')}:{case.get('line', '')}".strip(":")
    for tag, status in _OUTCOMES:
        element = case.find(tag)
        if element is not None:
            message = (element.get("message") or (element.text or "").strip().splitlines()[-1:] or [""])[0]
            if isinstance(message, list):
                message = ""
            detail = "\n".join((element.text or "").strip().splitlines()[-12:])
            return CheckResult(check_id, status, str(message)[:300], location, detail)
    return CheckResult(check_id, CheckStatus.PASSED, location=location)
