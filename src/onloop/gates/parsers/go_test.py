"""`go test -json` output (test2json): one JSON event per line.

Events carry `Action` (run, pause, cont, pass, fail, skip, output, start), `Package`, optional `Test`
(subtests as `TestX/case`) and `Output`. Ids are `<package>::<Test>`; a package that fails with no
test (a build error, a panic in init) is the check `<package>` with its output as the message. The
message is the first `file_test.go:12: ...` line the test printed, which is where `t.Error` points.
"""

from __future__ import annotations

import json
import re
from typing import Any

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers.base import GateOutput

_STATUS = {"pass": CheckStatus.PASSED, "fail": CheckStatus.FAILED, "skip": CheckStatus.SKIPPED}
_LOCATED = re.compile(r"^\s*(?P<loc>[\w./-]+\.go:\d+)(?::\d+)?: (?P<msg>.+)$")
_NOISE = re.compile(r"^(=== (RUN|PAUSE|CONT|NAME)|--- (FAIL|PASS|SKIP)|FAIL\b|ok\b|PASS$|# )")


class GoTestParser:
    name = "go"

    def detect(self, output: GateOutput) -> bool:
        head = output.output.lstrip()[:2000]
        return head.startswith("{") and '"Action"' in head and '"Package"' in head

    def parse(self, output: GateOutput) -> list[CheckResult]:
        outcomes: dict[str, str] = {}
        lines: dict[str, list[str]] = {}
        for event in _events(output.output):
            key = f"{event.get('Package', '')}::{event['Test']}" if event.get("Test") else event.get("Package", "")
            action = event.get("Action", "")
            if action == "output":
                lines.setdefault(key, []).append(str(event.get("Output", "")).rstrip("\n"))
            elif action in _STATUS:
                outcomes[key] = action
        checks = []
        for key in sorted(outcomes):
            is_package = "::" not in key
            if is_package and (outcomes[key] != "fail" or any(k.startswith(key + "::") and v == "fail"
                                                               for k, v in outcomes.items())):
                continue  # a package's verdict is only a check of its own when no test explains it
            message, location = _message(lines.get(key, []))
            if not message and outcomes[key] == "fail" and any(
                    k.startswith(key + "/") and v == "fail" for k, v in outcomes.items()):
                message = "a subtest failed"
            useful = [line for line in lines.get(key, []) if not _NOISE.match(line.strip())]
            checks.append(CheckResult(key, _STATUS[outcomes[key]], message, location, "\n".join(useful[-12:])))
        return checks


def _events(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
    return events


def _message(lines: list[str]) -> tuple[str, str]:
    for line in lines:
        match = _LOCATED.match(line)
        if match:
            return match["msg"].strip()[:300], match["loc"]
    meaningful = [line.strip() for line in lines if line.strip() and not _NOISE.match(line.strip())]
    return (meaningful[0][:300] if meaningful else ""), ""
