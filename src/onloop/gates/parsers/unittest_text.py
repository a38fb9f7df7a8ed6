"""Python's unittest verbose output (`python -m unittest -v`): one line per test.

Lines look like `test_add (tests.test_calc.CalcTest.test_add) ... ok` (or `FAIL`, `ERROR`,
`skipped 'why'`, `expected failure`), with the status on a later line when the test printed something
in between; the failure blocks after the `=====` separators give the message (and count as a failure).

A failing `self.subTest(...)` has an indented line of its own (`  test_x (m.C.test_x) (i=1) ... FAIL`)
and a block headed `FAIL: test_x (m.C.test_x) (i=1)`: it fails its test, whose message lists the
failing subtests. Only complete lines count (a cut last line never yields an id), and
`incomplete_reason` says when the output lacks unittest's final `Ran N tests` and verdict lines. When
the verdict (`FAILED (failures=3, errors=1)`) counts other failures than the blocks found, an ERROR
`<gate>:counts` check says so.
"""

from __future__ import annotations

import re

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers._lint import sample
from onloop.gates.parsers.base import GateOutput
from onloop.gates.parsers.pytest_text import subtests_message

_START = re.compile(r"^(?P<name>[\w.]+) \((?P<where>[\w.]+)\)(?P<rest>.*)$")
_OUTCOME = re.compile(r"^(?P<outcome>ok|FAIL|ERROR|skipped.*|expected failure|unexpected success)$")
_BLOCK = re.compile(
    r"^={50,}\n(?P<kind>FAIL|ERROR): (?P<name>[\w.]+) \((?P<where>[\w.]+)\)(?: (?P<sub>[^\n]+))?\n-{50,}\n"
    r"(?P<body>.*?)(?=^={50,}|^-{50,}\nRan )",
    re.MULTILINE | re.DOTALL,
)
_RAN = re.compile(
    r"^Ran \d+ tests? in \d+(?:\.\d+)?s\n+(?P<verdict>OK\b.*|FAILED \((?P<counts>[^)]*)\)|NO TESTS RAN.*)$",
    re.MULTILINE,
)
_STATUS = {"ok": CheckStatus.PASSED, "FAIL": CheckStatus.FAILED, "ERROR": CheckStatus.ERROR}
_RANK = {CheckStatus.PASSED: 0, CheckStatus.SKIPPED: 1, CheckStatus.FAILED: 2, CheckStatus.ERROR: 3}


class UnittestParser:
    name = "unittest"

    def detect(self, output: GateOutput) -> bool:
        text = sample(output.output)
        return bool(re.search(r"^Ran \d+ tests? in ", text, re.MULTILINE)) and bool(_outcomes(text))

    def parse(self, output: GateOutput) -> list[CheckResult]:
        text = _complete(output.output)
        blocks = list(_BLOCK.finditer(text))
        details: dict[str, tuple[str, str]] = {}
        subtests: dict[str, dict[str, str]] = {}
        for block in blocks:
            check_id = _id(block["where"], block["name"])
            if block["sub"]:
                subtests.setdefault(check_id, {})[block["sub"]] = _message(block["body"])
            details.setdefault(check_id, (block["kind"], block["body"].strip()))
        statuses = _outcomes(text)
        for check_id, (kind, _) in details.items():  # a failure block is evidence too: the worse wins
            _worst(statuses, check_id, _STATUS[kind])
        checks = [_check(i, s, details.get(i, ("", ""))[1], subtests.get(i, {})) for i, s in statuses.items()]
        return checks + _count_checks(text, output.gate, blocks)


def incomplete_reason(text: str) -> str | None:
    """Why a unittest output is not the output of a whole run (it lacks the final `Ran N tests in
    0.01s` and `OK`/`FAILED (...)` lines: the run was killed, or the output cut), or None."""
    if _RAN.search(text, max(0, len(text) - 4000)):
        return None
    last = text.rstrip("\n").rsplit("\n", 1)[-1].strip()
    return f"no final 'Ran N tests' and verdict lines: the run was killed or its output was cut (last line: " \
           f"{last[:120]!r})"


def _complete(text: str) -> str:
    """The text up to its last newline: a line cut short (no newline yet) is no evidence."""
    return text if text.endswith("\n") else text[:text.rfind("\n") + 1]


def _check(check_id: str, status: CheckStatus, body: str, subtests: dict[str, str]) -> CheckResult:
    message = _message(body)
    if subtests:
        first = next((m for m in subtests.values() if m), "")
        message = subtests_message("", list(subtests), first)
    lines = [line for line in body.splitlines() if line.strip()]
    return CheckResult(check_id, status, message[:300], _location(body), "\n".join(lines[-12:]))


def _message(body: str) -> str:
    lines = [line for line in body.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


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


def _count_checks(text: str, gate: str, blocks: list[re.Match[str]]) -> list[CheckResult]:
    """An ERROR `<gate>:counts` check when the verdict's failures/errors differ from the blocks found."""
    ran = list(_RAN.finditer(text, max(0, len(text) - 4000)))
    if not ran:
        return []
    counts = {key: int(value) for key, value in re.findall(r"(\w+(?: \w+)?)=(\d+)", ran[-1]["counts"] or "")}
    disagree = []
    for kind, key in (("FAIL", "failures"), ("ERROR", "errors")):
        found = sum(1 for block in blocks if block["kind"] == kind)
        if found != counts.get(key, 0):
            disagree.append(f"summary says {counts.get(key, 0)} {key}, parser found {found}")
    return [CheckResult(f"{gate}:counts", CheckStatus.ERROR, "; ".join(disagree))] if disagree else []


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
