"""pytest's terminal output: `-q`, default, `-v`/`-vv` (one line per test), `-rA`, any `--tb` style.

Three sources, read in order of trust:
1. the short test summary (`FAILED tests/x.py::test_y - msg`, `ERROR ...`, `PASSED ...` with -rA):
   full node ids, printed by default for failures and errors;
2. the verbose progress lines (`tests/x.py::test_y PASSED [ 3%]`, or xdist's `[gw0] [ 3%] PASSED id`):
   the passing tests, so a check that goes from failing to passing is seen as such;
3. the FAILURES / ERRORS sections: the first `E   ` line is the message, and the deepest frame in
   the project (`src/pkg/mod.py:38: ZeroDivisionError`) is the location.

Ids are pytest node ids (`tests/test_core.py::TestX::test_y[param]`), stable across runs. A test that
passes its call and errors in teardown is one check with status ERROR (the worst outcome wins).

The output can be cut (head and tail kept). When the final line says more tests failed than ids
could be found, a failing `<gate>:unidentified_failures` check says so, so a cut log is never read as
"fewer failures".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers._lint import sample
from onloop.gates.parsers.base import GateOutput

_STATUSES = "PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS"
_PROGRESS = re.compile(
    rf"(?:(?P<id>[^\s\[]\S*::.*?) (?P<st>{_STATUSES})(?: \(.*?\))?|\[gw\d+\] \[\s*\d+%\] (?P<st2>{_STATUSES}) "
    rf"(?P<id2>\S.*?))(?:\s+\[\s*\d+%\])?",
)
_HEADING = re.compile(r"^=+ (?P<title>.+?) =+$", re.MULTILINE)
_SECTION = re.compile(r"^_{3,} (?P<head>.+?) _{3,}$", re.MULTILINE)
_FRAME = re.compile(r"(?P<path>[^\s:>][^\s:]*):(?P<line>\d+): ?(?P<rest>.*)")
_FINAL = re.compile(r"^=*\s*(?P<counts>(?:\d+ \w+(?:, )?)+) in \d+\.\d+s\b.*$", re.MULTILINE)
_STATUS = {
    "PASSED": CheckStatus.PASSED, "XPASS": CheckStatus.PASSED, "FAILED": CheckStatus.FAILED,
    "ERROR": CheckStatus.ERROR, "SKIPPED": CheckStatus.SKIPPED, "XFAIL": CheckStatus.SKIPPED,
}
_RANK = {"passed": 0, "skipped": 0, "failed": 2, "error": 3}
_DETAIL_LINES = 12
_REGEX_LINE_MAX = 2000


@dataclass(frozen=True, slots=True)
class _Failure:
    message: str
    location: str
    detail: str


class PytestTextParser:
    name = "pytest"

    def detect(self, output: GateOutput) -> bool:
        text = sample(output.output)
        return bool(
            _FINAL.search(text, max(0, len(text) - 4000))
            or re.search(r"^=+ (test session starts|FAILURES|ERRORS|short test summary info) =+$", text, re.MULTILINE)
        )

    def parse(self, output: GateOutput) -> list[CheckResult]:
        text = output.output
        statuses: dict[str, CheckStatus] = {}
        end = _summary_start(text)
        for check_id, word in _progress_lines(text, len(text) if end is None else end):
            _merge(statuses, check_id, _STATUS[word])
        return _finish(text, output.gate, statuses, _summary_start(text) or 0)


def _progress_lines(text: str, end: int) -> Iterator[tuple[str, str]]:
    """(node id, status word) of the verbose progress lines before `end`.

    Line by line with string operations (the common `id STATUS [ nn%]` shape costs a few str calls);
    the regex only sees the rare shapes (a skip reason in parentheses, xdist's `[gw0] [ 3%] PASSED id`).
    A MULTILINE regex over the whole text was 15 MB/s; this is several times faster.
    """
    for line in text[:end].split("\n"):
        if "::" not in line or line[0] in " =_E>":
            continue
        core = line[:line.rfind("[")].rstrip() if line.endswith("%]") else line.rstrip()
        cut = core.rfind(" ")
        word = core[cut + 1:]
        if word in _STATUS and cut > 0 and not line.startswith("[gw"):
            yield core[:cut], word
        elif (core.endswith(")") or line.startswith("[gw")) and len(line) <= _REGEX_LINE_MAX:
            # The rare shapes go through a regex that backtracks on pathological lines: bounded, so
            # output the code under test prints can never hang onloop (a 900 KB line took hours).
            match = _PROGRESS.fullmatch(line.rstrip())
            if match:
                yield match["id"] or match["id2"], match["st"] or match["st2"]


def parse_failing(text: str, gate: str) -> list[CheckResult] | None:
    """Only the failing checks, reading only the summary and the failure sections; None when the
    output has no short test summary (then the full `parse` is needed). This is the fast path of
    `onloop condense`: on a 100,000-line log most lines are passing tests it never has to look at.
    """
    start = _summary_start(text)
    if start is None:
        return None
    return [c for c in _finish(text, gate, {}, start) if _failing(c.status)]


def _summary_start(text: str) -> int | None:
    index = text.rfind(" short test summary info ")
    return None if index < 0 else text.rfind("\n", 0, index) + 1


def _finish(text: str, gate: str, statuses: dict[str, CheckStatus], summary_at: int) -> list[CheckResult]:
    summary_msgs: dict[str, str] = {}
    failing_reports = 0
    for word, check_id, message in _summary_lines(text, summary_at):
        status = _STATUS[word]
        _merge(statuses, check_id, status)
        if _failing(status):
            failing_reports += 1
            summary_msgs.setdefault(check_id, message)
    sections = _sections(text, summary_at or len(text))
    failures = _match_sections(sections, [i for i, s in statuses.items() if _failing(s)])
    for check_id in failures:
        _merge(statuses, check_id, CheckStatus.FAILED)
    checks = [_check(i, s, failures.get(i), summary_msgs.get(i, "")) for i, s in sorted(statuses.items())]
    reported = _reported_failing(text)
    found = max(failing_reports, len(sections))
    if reported > found:
        checks.append(CheckResult(
            f"{gate}:unidentified_failures", CheckStatus.FAILED,
            f"pytest reported {reported} failed/errors but only {found} could be identified in the output "
            "(output cut?)"))
    return checks


def _summary_lines(text: str, start: int) -> Iterator[tuple[str, str, str]]:
    """(status word, node id, message) of the short-summary lines from `start` on.

    Plain string operations, not a regex: `FAILED <id> - <message>` where the id may hold spaces
    inside its `[params]` (`test_x[ 7 -7]`); SKIPPED lines (`SKIPPED [1] path:line: why`) carry no id.
    """
    for line in text[start:].split("\n"):
        word, _, rest = line.partition(" ")
        if word not in _STATUS or not rest or rest[0] in " [":
            continue
        bracket, dash = rest.find("["), rest.find(" - ")
        if bracket >= 0 and (dash < 0 or bracket < dash):
            close = rest.find("] - ", bracket)
            if close >= 0:
                yield word, rest[:close + 1], rest[close + 4:].strip()
                continue
            if rest.rstrip().endswith("]"):
                yield word, rest.rstrip(), ""
                continue
        check_id, _, message = rest.partition(" - ")
        yield word, check_id.rstrip(), message.strip()


def _failing(status: CheckStatus) -> bool:
    # Identity tests: Enum.__hash__ is Python code, and this runs once per test of a 100k-test log.
    return status is CheckStatus.FAILED or status is CheckStatus.ERROR


def _merge(statuses: dict[str, CheckStatus], check_id: str, status: CheckStatus) -> None:
    check_id = check_id.strip()
    old = statuses.get(check_id)
    if old is None or _RANK[status.value] > _RANK[old.value]:
        statuses[check_id] = status


def _check(check_id: str, status: CheckStatus, failure: _Failure | None, summary_msg: str) -> CheckResult:
    if not _failing(status):
        return CheckResult(check_id, status)
    if failure is None:
        return CheckResult(check_id, status, summary_msg[:300])
    return CheckResult(check_id, status, (failure.message or summary_msg)[:300], failure.location, failure.detail)


def _sections(text: str, end: int) -> list[tuple[str, _Failure]]:
    """(header, failure) for every block under the FAILURES and ERRORS headings before `end`."""
    starts = [i for i in (_heading_at(text, " ERRORS ", end), _heading_at(text, " FAILURES ", end)) if i >= 0]
    if not starts:
        return []
    begin = min(starts)
    found: list[tuple[str, _Failure]] = []
    headings = [m for m in _lines(text, "=", _HEADING, begin, end)]
    for index, heading in enumerate(headings):
        if heading["title"] not in ("FAILURES", "ERRORS"):
            continue
        stop = headings[index + 1].start() if index + 1 < len(headings) else end
        heads = list(_lines(text, "___", _SECTION, heading.end(), stop))
        for number, head in enumerate(heads):
            close = heads[number + 1].start() if number + 1 < len(heads) else stop
            found.append((head["head"], _failure(text[head.end():close])))
    return found


def _lines(text: str, prefix: str, pattern: re.Pattern[str], begin: int, end: int) -> Iterator[re.Match[str]]:
    """Lines in [begin, end) that start with `prefix` and match `pattern` whole.

    str.find walks the text at C speed; a MULTILINE regex would try every position of a 10 MB log.
    """
    at_line_start = text.startswith(prefix, begin) and (begin == 0 or text[begin - 1] == "\n")
    start = begin if at_line_start else _next_line(text, prefix, begin, end)
    while 0 <= start < end:
        line_end = text.find("\n", start)
        line_end = len(text) if line_end < 0 else line_end
        match = pattern.fullmatch(text, start, line_end)
        if match:
            yield match
        start = _next_line(text, prefix, line_end, end)


def _next_line(text: str, prefix: str, begin: int, end: int) -> int:
    index = text.find("\n" + prefix, begin, end)
    return -1 if index < 0 else index + 1


def _heading_at(text: str, title: str, end: int) -> int:
    """Start of the last `=== title ===` line before `end`, searched backwards (it sits near the end)."""
    index = text.rfind(title + "=", 0, end)
    while index >= 0:
        line_start = text.rfind("\n", 0, index) + 1
        line_end = text.find("\n", index)
        if _HEADING.fullmatch(text, line_start, len(text) if line_end < 0 else line_end):
            return line_start
        index = text.rfind(title + "=", 0, index)
    return -1


def _failure(body: str) -> _Failure:
    e_lines: list[str] = []
    frames: list[tuple[str, str, str]] = []
    for line in body.split("\n"):
        first = line[:1]
        if first == "E":
            message = line[1:].strip() if line.startswith("E ") else ""
            if message:
                e_lines.append(message)
        elif first and first not in " >_-=" and ":" in line:
            match = _FRAME.fullmatch(line)
            if match:
                frames.append((match["path"], match["line"], match["rest"]))
    project = [f for f in frames if not f[0].startswith("/") and "site-packages" not in f[0]]
    path, line, rest = (project or frames or [("", "", "")])[-1]
    location = f"{path}:{line}" if path else ""
    message = e_lines[0] if e_lines else rest.strip()
    detail = "\n".join([*e_lines[:_DETAIL_LINES], *([location] if location else [])])
    return _Failure(message, location, detail)


def _section_key(check_id: str) -> str:
    if "::" not in check_id:
        return f"collecting {check_id}"
    return check_id.split("::", 1)[1].replace("::", ".")


def _match_sections(sections: list[tuple[str, _Failure]], failing_ids: list[str]) -> dict[str, _Failure]:
    """Map section headers (`Class.test[p]`, `ERROR at setup of test_x`) to node ids, in order."""
    by_key: dict[str, list[str]] = {}
    for check_id in failing_ids:
        by_key.setdefault(_section_key(check_id), []).append(check_id)
    used: dict[str, int] = {}
    result: dict[str, _Failure] = {}
    for head, failure in sections:
        key = re.sub(r"^ERROR (?:at (?:setup|teardown) of )?", "", head)
        candidates = by_key.get(key)
        if not candidates:
            fallback = _id_from_section(key, failure)
            result.setdefault(fallback, failure)
            continue
        index = used.get(key, 0)
        used[key] = index + 1
        result.setdefault(candidates[min(index, len(candidates) - 1)], failure)
    return result


def _id_from_section(key: str, failure: _Failure) -> str:
    """A node id rebuilt from a section when no summary named it (`-rN`, or the summary was cut)."""
    if key.startswith("collecting "):
        return key.removeprefix("collecting ")
    name, bracket, params = key.partition("[")
    path = failure.location.rsplit(":", 1)[0] if failure.location else "<unknown>"
    return f"{path}::{name.replace('.', '::')}{bracket}{params}"


def _reported_failing(text: str) -> int:
    matches = list(_FINAL.finditer(text, max(0, len(text) - 4000)))
    if not matches:
        return 0
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", matches[-1]["counts"])}
    return counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
