"""pytest's terminal output: `-q`, default, `-v`/`-vv` (one line per test), `-rA`, any `--tb` style.

Three sources, read in order of trust:
1. the short test summary (`FAILED tests/x.py::test_y - msg`, `ERROR ...`, `PASSED ...` with -rA):
   full node ids, printed by default for failures and errors;
2. the verbose progress lines (`tests/x.py::test_y PASSED [ 3%]`, or xdist's `[gw0] [ 3%] PASSED id`):
   the passing tests, so a check that goes from failing to passing is seen as such;
3. the FAILURES / ERRORS sections: the first `E   ` line is the message, and the deepest frame in
   the project (`src/pkg/mod.py:38: ZeroDivisionError`) is the location. A module that fails to
   import with a SyntaxError is located by the SyntaxError's own `File "...", line N`, not by the
   frame of ast.py or importlib that raised it.

Ids are pytest node ids (`tests/test_core.py::TestX::test_y[param]`), stable across runs. A test that
passes its call and errors in teardown is one check with status ERROR (the worst outcome wins).

Reruns (pytest-rerunfailures' `RERUN` lines) are attempts of one test, never checks of their own:
the last attempt decides, and a test that passed after a rerun says so in its message (flaky).
pytest-repeat's `test_x[1-3]` are distinct ids and stay distinct. Subtests (pytest's `subtests`
fixture, unittest's `subTest`: `SUBFAILED[msg] (i=1) id`) are no checks either: a failing subtest
fails its parent test, whose message lists the failing subtests. pytest itself reports a unittest
test whose subtest failed as PASSED; the SUBFAILED line is what says otherwise.

Only complete lines count: an output cut mid-line (a killed run, a cut file) never yields the
prefix of an id. `incomplete_reason` says when an output lacks pytest's final summary line. When
the final line says more tests failed than ids could be found, a failing
`<gate>:unidentified_failures` check says so, so a cut log is never read as "fewer failures"; when
the counts disagree otherwise (more failures found than reported, or, where the output lists passing
tests, a different number of them), an ERROR `<gate>:counts` check says how.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers._lint import relative_path, root_of, sample
from onloop.gates.parsers.base import GateOutput

_STATUSES = "PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS|RERUN"
_PROGRESS = re.compile(
    rf"(?:(?P<id>[^\s\[]\S*::.*?) (?P<st>{_STATUSES})(?: \(.*?\))?|\[gw\d+\] \[\s*\d+%\] (?P<st2>{_STATUSES}) "
    rf"(?P<id2>\S.*?))(?:\s+\[\s*\d+%\])?",
)
_XDIST_PREFIX = re.compile(r"\[gw\d+\] \[\s*\d+%\] ")
_HEADING = re.compile(r"^=+ (?P<title>.+?) =+$", re.MULTILINE)
_SECTION = re.compile(r"^_{3,} (?P<head>.+?) _{3,}$", re.MULTILINE)
_FRAME = re.compile(r"(?P<path>[^\s:>][^\s:]*):(?P<line>\d+): ?(?P<rest>.*)")
_FINAL = re.compile(r"^=*\s*(?P<counts>(?:\d+ \w+(?: \w+)?(?:, )?)+) in \d+\.\d+s\b.*$", re.MULTILINE)
_NO_TESTS = re.compile(r"^=*\s*no tests ran in \d+\.\d+s\b", re.MULTILINE)
_STOPPED = re.compile(r"^!+ (?P<why>KeyboardInterrupt|_pytest\.outcomes\.Exit:.*?) !+$", re.MULTILINE)
_ROOTDIR = re.compile(r"^rootdir: (?P<root>/\S*)", re.MULTILINE)
_SYNTAX_FILE = re.compile(r'File "(?P<path>[^"<][^"]*)", line (?P<line>\d+)')
_SYNTAX_ERROR = re.compile(r"(?:SyntaxError|IndentationError|TabError)\b.*")
_OWN_SUBTEST_SUMMARY = re.compile(r"contains \d+ failed subtests?")
_STATUS = {
    "PASSED": CheckStatus.PASSED, "XPASS": CheckStatus.PASSED, "FAILED": CheckStatus.FAILED,
    "ERROR": CheckStatus.ERROR, "SKIPPED": CheckStatus.SKIPPED, "XFAIL": CheckStatus.SKIPPED,
}
_WORDS = frozenset({*_STATUS, "RERUN"})
_KIND = {"FAILED": "failed", "SUBFAILED": "failed", "ERROR": "errors", "PASSED": "passed", "XPASS": "passed"}
_SUB_FAILED = "SUBFAILED"
_RANK = {"passed": 0, "skipped": 0, "failed": 2, "error": 3}
_DETAIL_LINES = 12
_REGEX_LINE_MAX = 2000
_MESSAGE_MAX = 300


@dataclass(frozen=True, slots=True)
class _Failure:
    message: str
    location: str
    detail: str
    test_file: str = ""  # the first frame in a test_*.py file: where the test lives, when no line names it


@dataclass(slots=True)
class _Tally:
    """What one output says of its tests (a private accumulator; the checks built from it are frozen).

    `statuses` holds the worst status of each id's last attempt. The sets count reports the way pytest's
    final line counts them (one `passed` per test whose call passed, one `failed` per failing test or
    subtest), from the progress lines, to compare with that line.
    """

    statuses: dict[str, CheckStatus] = field(default_factory=dict)
    reruns: dict[str, int] = field(default_factory=dict)
    subtests: dict[str, dict[str, str]] = field(default_factory=dict)  # parent id -> {description: message}
    subtest_reports: dict[str, int] = field(default_factory=dict)  # failed subtests' progress lines, per parent
    passed: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    errors: set[str] = field(default_factory=set)

    def see(self, check_id: str, word: str) -> None:
        check_id = check_id.strip()
        if word == "RERUN":
            # The attempt that ends here was superseded by the next one: what it said no longer counts.
            self.reruns[check_id] = self.reruns.get(check_id, 0) + 1
            for seen in (self.statuses, self.subtests, self.subtest_reports):
                seen.pop(check_id, None)
            for counted in (self.passed, self.failed, self.errors):
                counted.discard(check_id)
            return
        status = _STATUS[word]
        old = self.statuses.get(check_id)  # _merge, inlined: this runs once per line of a 100k-line log
        if old is None or _RANK[status.value] > _RANK[old.value]:
            self.statuses[check_id] = status
        if status is CheckStatus.PASSED:
            self.passed.add(check_id)
        elif status is CheckStatus.FAILED:
            self.failed.add(check_id)
        elif status is CheckStatus.ERROR:
            self.errors.add(check_id)

    def see_subtest(self, parent: str, description: str, message: str = "") -> None:
        failing = self.subtests.setdefault(parent, {})
        if message or description not in failing:
            failing[description] = message or failing.get(description, "")


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
        tally = _Tally()
        end = _summary_start(text)
        for check_id, word, description in _progress_lines(text, len(text) if end is None else end):
            if word == _SUB_FAILED:
                tally.see_subtest(check_id, description)
                tally.subtest_reports[check_id] = tally.subtest_reports.get(check_id, 0) + 1
            else:
                tally.see(check_id, word)
        for check_id, count in _rerun_summary(text, len(text) if end is None else end).items():
            tally.reruns[check_id] = max(tally.reruns.get(check_id, 0), count)
        return _finish(text, output.gate, tally, end or 0, root_of(output))


def incomplete_reason(text: str) -> str | None:
    """Why a pytest output is not the output of a whole run, or None when it is.

    Whole means it ends with pytest's final summary line (`=== 2 failed, 5 passed in 0.12s ===`):
    a run that was killed, or an output cut short, has none. So has `pytest -qq`, by design, and no
    text tells its whole output from a `-q` output cut at a line's end: it counts as incomplete. A
    run stopped by Ctrl-C or `pytest.exit()` has a final line, but did not run all its tests.
    """
    tail = text[-4000:]
    if not tail.strip():
        return "the output is empty: pytest printed no final summary line"
    if not (_FINAL.search(tail) or _NO_TESTS.search(tail)):
        last = tail.rstrip("\n").rsplit("\n", 1)[-1].strip()
        return f"no final summary line: the run was killed or its output was cut (last line: {last[:120]!r})"
    stopped = _STOPPED.search(tail)
    if stopped:
        return f"the run was stopped early ({stopped['why']}): not every test ran"
    return None


def _complete_lines(text: str, start: int, end: int) -> list[str]:
    """The lines of text[start:end]; a last line without its newline (cut mid-line) is left out."""
    lines = text[start:end].split("\n")
    lines.pop()  # "" when text[start:end] ends with a newline, else the cut line
    return lines


def _progress_lines(text: str, end: int) -> Iterator[tuple[str, str, str]]:
    """(node id, status word, subtest description) of the verbose progress lines before `end`.

    Line by line with string operations (the common `id STATUS [ nn%]` shape costs a few str calls);
    the regex only sees the rare shapes (a skip reason in parentheses, xdist's `[gw0] [ 3%] PASSED id`).
    A MULTILINE regex over the whole text was 15 MB/s; this is several times faster.
    """
    for line in _complete_lines(text, 0, end):
        if "::" not in line or line[0] in " =_E>":
            continue
        core = line[:line.rfind("[")].rstrip() if line.endswith("%]") else line.rstrip()
        cut = core.rfind(" ")
        word = core[cut + 1:]
        if word in _WORDS and cut > 0 and not line.startswith("[gw"):
            yield core[:cut], word, ""
        elif " SUBFAILED" in line and len(line) <= _REGEX_LINE_MAX:
            sub = _subtest_line(core)
            if sub is not None:
                yield sub[0], _SUB_FAILED, sub[1]
        elif (core.endswith(")") or line.startswith("[gw")) and len(line) <= _REGEX_LINE_MAX:
            # The rare shapes go through a regex that backtracks on pathological lines: bounded, so
            # output the code under test prints can never hang onloop (a 900 KB line took hours).
            match = _PROGRESS.fullmatch(line.rstrip())
            if match:
                yield match["id"] or match["id2"], match["st"] or match["st2"], ""


def _subtest_line(core: str) -> tuple[str, str] | None:
    """(parent id, description) of a failed subtest's progress line: `id SUBFAILED[msg] (i=1)`, or
    xdist's `[gw0] [ 3%] SUBFAILED[msg] (i=1) id`."""
    prefix = _XDIST_PREFIX.match(core)
    if prefix:
        if not core.startswith(_SUB_FAILED, prefix.end()):
            return None
        found = _subtest_summary(core[prefix.end() + len(_SUB_FAILED):])
        return None if found is None else (found[0], found[1])
    at, scanned, depth = core.find(" " + _SUB_FAILED), 0, 0
    while at > 0:
        depth += core.count("[", scanned, at) - core.count("]", scanned, at)
        scanned = at
        if depth == 0:  # not inside the id's own [params]
            return core[:at], core[at + 1 + len(_SUB_FAILED):].strip()
        at = core.find(" " + _SUB_FAILED, at + 1)
    return None


def _subtest_summary(rest: str) -> tuple[str, str, str] | None:
    """(parent id, description, message) of `[msg] (i=1) tests/x.py::test_y - message`, the part after
    the SUBFAILED word. The id starts at the first word holding `::` after a `]` or `)`."""
    at = rest.find(" ")
    while at > 0:
        next_space = rest.find(" ", at + 1)
        if rest[at - 1] in "])" and rest.find("::", at + 1, len(rest) if next_space < 0 else next_space) >= 0:
            check_id, message = _split_message(rest[at + 1:])
            return check_id, rest[:at].strip(), message
        at = next_space
    return None


def parse_failing(text: str, gate: str) -> list[CheckResult] | None:
    """Only the failing checks, reading only the summary and the failure sections; None when the
    output has no short test summary (then the full `parse` is needed). This is the fast path of
    `onloop condense`: on a 100,000-line log most lines are passing tests it never has to look at.
    """
    start = _summary_start(text)
    if start is None:
        return None
    return [c for c in _finish(text, gate, _Tally(), start, None) if _failing(c.status)]


def _summary_start(text: str) -> int | None:
    index = text.rfind(" short test summary info ")
    return None if index < 0 else text.rfind("\n", 0, index) + 1


def _rerun_summary(text: str, end: int) -> dict[str, int]:
    """Reruns per id from pytest-rerunfailures' own section (`-rR`), one `RERUN <id>` line per attempt."""
    start = text.rfind(" rerun test summary info ", 0, end)
    if start < 0:
        return {}
    counts: dict[str, int] = {}
    for line in _complete_lines(text, text.find("\n", start) + 1, end):
        if line.startswith("="):
            break
        if line.startswith("RERUN "):
            counts[line[6:].strip()] = counts.get(line[6:].strip(), 0) + 1
    return counts


def _finish(text: str, gate: str, tally: _Tally, summary_at: int, root: str | None) -> list[CheckResult]:
    summary_msgs: dict[str, str] = {}
    summary = {"failed": 0, "errors": 0, "passed": 0}  # reports the short summary lists, by kind
    for word, check_id, message, description in _summary_lines(text, summary_at):
        if word == _SUB_FAILED:
            tally.see_subtest(check_id, description, message)
        else:
            _merge(tally.statuses, check_id, _STATUS[word])
            if word in ("FAILED", "ERROR"):
                summary_msgs.setdefault(check_id, message)
        kind = _KIND.get(word)
        if kind is not None:
            summary[kind] += 1
    sections = _sections(text, summary_at or len(text))
    sections = _relative_sections(sections, root or _root_from(text, sections))
    own, subs = _match_sections(sections, tally)
    for check_id in own:
        _merge(tally.statuses, check_id, CheckStatus.FAILED)
    for parent in subs:
        for description in subs[parent]:
            tally.see_subtest(parent, description)
    for parent in tally.subtests:  # FAILED even where pytest said PASSED (a unittest subTest)
        _merge(tally.statuses, parent, CheckStatus.FAILED)
    checks = [_check(i, s, tally, own.get(i), subs.get(i, {}), summary_msgs.get(i, ""))
              for i, s in sorted(tally.statuses.items())]
    return checks + _count_checks(text, gate, tally, summary, len(sections))


def _split_message(rest: str) -> tuple[str, str]:
    """(node id, message) of `<id> - <message>`, where the id may hold ` - ` inside its `[params]`."""
    bracket, dash = rest.find("["), rest.find(" - ")
    if bracket >= 0 and (dash < 0 or bracket < dash):
        close = rest.find("] - ", bracket)
        if close >= 0:
            return rest[:close + 1], rest[close + 4:].strip()
        if rest.rstrip().endswith("]"):
            return rest.rstrip(), ""
    check_id, _, message = rest.partition(" - ")
    return check_id.rstrip(), message.strip()


def _summary_lines(text: str, start: int) -> Iterator[tuple[str, str, str, str]]:
    """(status word, node id, message, subtest description) of the short-summary lines from `start` on.

    Plain string operations, not a regex: `FAILED <id> - <message>` where the id may hold spaces
    inside its `[params]` (`test_x[ 7 -7]`); SKIPPED lines (`SKIPPED [1] path:line: why`) carry no id.
    A failed subtest's line is `SUBFAILED[msg] (i=1) <parent id> - <message>`.
    """
    for line in _complete_lines(text, start, len(text)):
        word, _, rest = line.partition(" ")
        if word.startswith(_SUB_FAILED) and len(line) <= _REGEX_LINE_MAX:
            sub = _subtest_summary(line[len(_SUB_FAILED):])
            if sub is not None:
                yield _SUB_FAILED, sub[0], sub[2], sub[1]
            continue
        if word not in _STATUS or not rest or rest[0] in " [":
            continue
        check_id, message = _split_message(rest)
        yield word, check_id, message, ""


def _failing(status: CheckStatus) -> bool:
    # Identity tests: Enum.__hash__ is Python code, and this runs once per test of a 100k-test log.
    return status is CheckStatus.FAILED or status is CheckStatus.ERROR


def _merge(statuses: dict[str, CheckStatus], check_id: str, status: CheckStatus) -> None:
    check_id = check_id.strip()
    old = statuses.get(check_id)
    if old is None or _RANK[status.value] > _RANK[old.value]:
        statuses[check_id] = status


def _check(check_id: str, status: CheckStatus, tally: _Tally, failure: _Failure | None,
           sub_failures: dict[str, _Failure], summary_msg: str) -> CheckResult:
    reruns = tally.reruns.get(check_id, 0) if tally.reruns else 0
    if not _failing(status):
        return CheckResult(check_id, status, rerun_message(reruns) if reruns else "")
    own = (failure.message if failure else "") or summary_msg
    subtests = tally.subtests.get(check_id, {})
    if subtests and (not own or _OWN_SUBTEST_SUMMARY.fullmatch(own.strip())):
        own, failure = "", None  # pytest's own "contains 1 failed subtest" says less than the subtests do
    message = subtests_message(own, list(subtests), _first_subtest_message(subtests, sub_failures)) if subtests \
        else own
    shown = failure or next(iter(sub_failures.values()), None)
    detail = shown.detail if shown else ""
    if reruns:
        detail = "\n".join(part for part in (detail, f"failed on every attempt ({reruns + 1})") if part)
    return CheckResult(check_id, status, message[:_MESSAGE_MAX], shown.location if shown else "", detail)


def _first_subtest_message(subtests: dict[str, str], sub_failures: dict[str, _Failure]) -> str:
    for description, message in subtests.items():
        found = message or (sub_failures[description].message if description in sub_failures else "")
        if found:
            return found
    return ""


def rerun_message(reruns: int) -> str:
    """The message of a test that passed on its last attempt after `reruns` failed ones (flaky)."""
    attempts = "an earlier attempt" if reruns == 1 else f"{reruns} earlier attempts"
    return f"flaky: passed on attempt {reruns + 1} after {attempts} failed (rerun)"


def subtests_message(own: str, descriptions: Sequence[str], first: str) -> str:
    """A parent test's message: its own failure (if any), then the failing subtests and the first reason."""
    count = len(descriptions)
    listed = f"{count} subtest{'s' if count > 1 else ''} failed: {', '.join(descriptions)}"
    if first:
        listed += f" - {first}"
    return f"{own}; {listed}" if own else listed


def _sections(text: str, end: int) -> list[tuple[str, _Failure, bool]]:
    """(header, failure, closed) for every block under the FAILURES and ERRORS headings before `end`;
    `closed` when something follows the block (else it may be cut short)."""
    starts = [i for i in (_heading_at(text, " ERRORS ", end), _heading_at(text, " FAILURES ", end)) if i >= 0]
    if not starts:
        return []
    begin = min(starts)
    found: list[tuple[str, _Failure, bool]] = []
    headings = [m for m in _lines(text, "=", _HEADING, begin, end)]
    for index, heading in enumerate(headings):
        if heading["title"] not in ("FAILURES", "ERRORS"):
            continue
        stop = headings[index + 1].start() if index + 1 < len(headings) else end
        heads = list(_lines(text, "___", _SECTION, heading.end(), stop))
        for number, head in enumerate(heads):
            close = heads[number + 1].start() if number + 1 < len(heads) else stop
            found.append((head["head"], _failure(text[head.end():close]), close < len(text)))
    return found


def _lines(text: str, prefix: str, pattern: re.Pattern[str], begin: int, end: int) -> Iterator[re.Match[str]]:
    """Lines in [begin, end) that start with `prefix` and match `pattern` whole.

    str.find walks the text at C speed; a MULTILINE regex would try every position of a 10 MB log.
    """
    at_line_start = text.startswith(prefix, begin) and (begin == 0 or text[begin - 1] == "\n")
    start = begin if at_line_start else _next_line(text, prefix, begin, end)
    while 0 <= start < end:
        # A heading or section line cut short still matches whole only if its title is whole: both
        # are padded on the right as on the left.
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
    syntax = syntax_error(e_lines)
    if syntax is not None:
        return _Failure(syntax[0], f"{syntax[1]}:{syntax[2]}", "\n".join(e_lines[:_DETAIL_LINES]), syntax[1])
    project = [f for f in frames if not f[0].startswith("/") and "site-packages" not in f[0]]
    path, line, rest = (project or frames or [("", "", "")])[-1]
    location = f"{path}:{line}" if path else ""
    message = e_lines[0] if e_lines else rest.strip()
    tests = [f for f in frames if _looks_like_test_file(f[0])]
    detail = "\n".join([*e_lines[:_DETAIL_LINES], *([location] if location else [])])
    return _Failure(message, location, detail, tests[0][0] if tests else "")


def syntax_error(e_lines: Sequence[str]) -> tuple[str, str, int] | None:
    """(message, path, line) of a SyntaxError block in a traceback's `E` lines (their `E` stripped):
    `File "tests/test_x.py", line 3`, the code and a caret, then `SyntaxError: ...`. pytest's crash
    frame of such an error is ast.py or importlib; the file and line that are wrong are these."""
    for index, line in enumerate(e_lines):
        where = _SYNTAX_FILE.fullmatch(line)
        if where is None:
            continue
        for after in e_lines[index + 1:index + 6]:
            if _SYNTAX_ERROR.fullmatch(after):
                return after, where["path"], int(where["line"])
    return None


def _looks_like_test_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def _root_from(text: str, sections: list[tuple[str, _Failure, bool]]) -> str | None:
    """The rootdir pytest ran in: its header line, else what a collection error's absolute SyntaxError
    path has in front of the module pytest names (`ERROR collecting tests/x.py`)."""
    header = _ROOTDIR.search(text, 0, 5000)
    if header:
        return header["root"]
    for head, failure, _ in sections:
        collected = head.removeprefix("ERROR collecting ")
        path = failure.location.rsplit(":", 1)[0]
        if collected != head and path.startswith("/") and path.endswith("/" + collected):
            return path[:-len(collected) - 1]
    return None


def _relative_sections(sections: list[tuple[str, _Failure, bool]],
                       root: str | None) -> list[tuple[str, _Failure, bool]]:
    if root is None:
        return sections
    relative: list[tuple[str, _Failure, bool]] = []
    for head, failure, closed in sections:
        path, _, line = failure.location.rpartition(":")
        if path.startswith("/"):
            failure = replace(failure, location=f"{relative_path(path, root)}:{line}")
        relative.append((head, failure, closed))
    return relative


def _section_key(check_id: str) -> str:
    if "::" not in check_id:
        return f"collecting {check_id}"
    return check_id.split("::", 1)[1].replace("::", ".")


def _match_sections(sections: list[tuple[str, _Failure, bool]],
                    tally: _Tally) -> tuple[dict[str, _Failure], dict[str, dict[str, _Failure]]]:
    """Map section headers (`Class.test[p]`, `ERROR at setup of test_x`, a subtest's `test_x [msg]
    (i=1)`) to node ids, in order: (the failures of the tests themselves, those of their subtests)."""
    if not sections:
        return {}, {}
    failing = [i for i, s in tally.statuses.items() if _failing(s)]
    others = [i for i, s in tally.statuses.items() if not _failing(s)]
    by_key: dict[str, list[str]] = {}
    for check_id in [*failing, *others, *(i for i in tally.subtests if i not in tally.statuses)]:
        by_key.setdefault(_section_key(check_id), []).append(check_id)
    used: dict[str, int] = {}
    own: dict[str, _Failure] = {}
    subs: dict[str, dict[str, _Failure]] = {}
    for head, failure, closed in sections:
        key = re.sub(r"^ERROR (?:at (?:setup|teardown) of )?", "", head)
        base, description = _split_subtest_key(key, by_key)
        candidates = by_key.get(base)
        if not candidates:
            guessed = _id_from_section(base, failure) if closed or base.startswith("collecting ") else None
            if guessed is None:
                continue  # not attributable: counted as a section, never given a made-up id
            check_id = guessed
        else:
            index = used.get(base, 0) if not description else 0
            used[base] = index + (0 if description else 1)
            check_id = candidates[min(index, len(candidates) - 1)]
        if description:
            subs.setdefault(check_id, {}).setdefault(description, failure)
        else:
            own.setdefault(check_id, failure)
    return own, subs


def _split_subtest_key(key: str, by_key: dict[str, list[str]]) -> tuple[str, str]:
    """(the test's key, the subtest description) of a section header; the description is "" for a
    test's own section. pytest heads a subtest's section `<test key> [msg] (k=v)`."""
    if key in by_key or len(key) > _REGEX_LINE_MAX:
        return key, ""
    depth = 0
    for index, char in enumerate(key):
        if char in "[(" and depth == 0 and index > 0 and key[index - 1] == " ":
            return key[:index - 1], key[index:]
        depth += 1 if char in "[(" else -1 if char in "])" else 0
    return key, ""


def _id_from_section(key: str, failure: _Failure) -> str | None:
    """A node id rebuilt from a section when no summary named it (`-rN`, or the summary was cut): the
    test file is the traceback's first frame in a `test_*.py` (a fixture's conftest.py is none); without
    one there is no id, and the failure counts as unidentified."""
    if key.startswith("collecting "):
        return key.removeprefix("collecting ")
    if not failure.test_file:
        return None
    name, bracket, params = key.partition("[")
    return f"{failure.test_file}::{name.replace('.', '::')}{bracket}{params}"


def _count_checks(text: str, gate: str, tally: _Tally, summary: dict[str, int], sections: int) -> list[CheckResult]:
    """The checks that say the final line disagrees with what could be found (none when it agrees).

    Found is the most of what each source lists: the short summary (one line per report), the
    progress lines (one per test and phase, of the last attempt), the failure sections.
    """
    reported = _reported_counts(text)
    if reported is None:
        return []
    found = {"failed": max(summary["failed"], len(tally.failed) + sum(tally.subtest_reports.values())),
             "errors": max(summary["errors"], len(tally.errors)), "passed": max(summary["passed"], len(tally.passed))}
    failing = reported["failed"] + reported["errors"]
    found_failing = max(found["failed"] + found["errors"], sections)
    checks: list[CheckResult] = []
    if failing > found_failing:
        checks.append(CheckResult(
            f"{gate}:unidentified_failures", CheckStatus.FAILED,
            f"pytest reported {failing} failed/errors but only {found_failing} could be identified in the output "
            "(output cut?)"))
    # Passing tests are compared only where the output lists them (-rA, -v): -q lists none.
    disagree = [f"summary says {reported[kind]} {kind}, parser found {found[kind]}" for kind in found
                if found[kind] > reported[kind] or (kind == "passed" and found[kind] and found[kind] != reported[kind])]
    if disagree:
        checks.append(CheckResult(f"{gate}:counts", CheckStatus.ERROR, "; ".join(disagree)))
    return checks


def _reported_counts(text: str) -> dict[str, int] | None:
    """The counts of pytest's final line (`6 failed, 4 passed, 8 subtests passed, 2 errors`), or None."""
    matches = list(_FINAL.finditer(text, max(0, len(text) - 4000)))
    if not matches:
        return None
    counts: dict[str, int] = {}
    for part in matches[-1]["counts"].split(", "):
        number, _, kind = part.partition(" ")
        counts[kind] = counts.get(kind, 0) + int(number)
    return {"failed": counts.get("failed", 0) + counts.get("subtests failed", 0),
            "errors": counts.get("error", 0) + counts.get("errors", 0),
            "passed": counts.get("passed", 0) + counts.get("xpassed", 0)}
