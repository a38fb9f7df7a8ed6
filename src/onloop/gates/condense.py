"""Condensing gate failures into the few lines a model needs, under a token budget.

What the next iteration sees of a failing gate is this summary, so it must tell the truth in few
tokens. The rules, in order of precedence:

1. **Every failing check id is in the text, always.** The id list, the header and the most frequent
   cause line are the floor of the output: never cut, even when they alone exceed the budget (then
   the budget is exceeded and the header says so; a model told "61 tests fail" without one reason
   would have to rerun the tests to learn anything). When the plain list would take more than half
   of the budget, ids sharing a stem (the node id before `[params]`, or up to the last `::` or `:`)
   are written once as the stem, followed by one
   indented `~suffix` line per id. `parse_failing_ids(text)` reads either form back; a line followed
   by `~` lines is a stem, any other line of the list is an id (node ids never contain newlines).
2. **One line per root cause.** Failing checks are grouped by (normalised message, location): digits,
   hex addresses and quoted values are blanked before comparing, so 48 parametrised cases failing on
   `assert '3' in <Specifier('>2')>` at the same line collapse to one line with a count. True, False
   and None and the insides of `{...}` and `[...]` literals are blanked too: they are the values
   that differ between the parametrised cases of one assertion.
3. **Cut by rule, never silently.** Causes are ordered by count (then text); cause lines are added
   while they fit, then detail excerpts for the top causes, then (with `raw_output`) error-looking
   lines of the log for checks that carry no message. Whatever does not fit is counted in a line
   saying what was cut.
4. **Stable.** The same input gives byte-identical output: everything is sorted, nothing depends on
   time, dict order of the input, or hashing.

Tokens are estimated as `ceil(len(text) / 4)`: about right for English and code with the BPE
tokenisers of current models, cheap, and deterministic. It is an estimate, used for budgeting only.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.terminal import strip_escapes

_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
_NUMBER = re.compile(r"\d+(?:\.\d+)*")
_CONSTANT = re.compile(r"\b(?:True|False|None)\b")
_LITERAL = re.compile(r"\{[^{}\n]*\}|\[[^\[\]\n]*\]")
_SPACE = re.compile(r"\s+")
_ERRORISH = re.compile(r"error|fail|exception|traceback|panic|fatal", re.IGNORECASE)
_LINE_MAX = 220
_DETAIL_MAX_LINES = 6
_RAW_MAX_LINES = 8
STEM_MARK = "~"


@dataclass(frozen=True, slots=True)
class Condensed:
    text: str
    failing_ids: tuple[str, ...]
    tokens_estimate: int


@dataclass(frozen=True, slots=True)
class _Cause:
    count: int
    message: str
    location: str
    first_id: str
    detail: tuple[str, ...]


def estimate_tokens(text: str) -> int:
    """ceil(len/4): the budgeting estimate used everywhere in onloop's context assembly."""
    return (len(text) + 3) // 4


def normalise(message: str) -> str:
    """A message with the parts that vary between instances of one root cause blanked out."""
    message = _ADDRESS.sub("<addr>", message)
    message = _QUOTED.sub("'?'", message)
    message = _NUMBER.sub("N", message)
    message = _CONSTANT.sub("?", message)
    message = _LITERAL.sub(lambda m: m.group()[0] + "..." + m.group()[-1], message)
    return _SPACE.sub(" ", message).strip()


def condense(checks: Sequence[CheckResult], *, token_budget: int = 600, raw_output: str | None = None) -> Condensed:
    """The failing checks as a short text: causes with counts, then every failing id (see module doc)."""
    failing = _failing(checks)
    ids = tuple(sorted(failing))
    if not ids:
        text = f"No failing checks ({len(checks)} checks passed or skipped)."
        return Condensed(text, (), estimate_tokens(text))
    budget_chars = max(0, token_budget) * 4
    id_block = _id_block(ids, budget_chars // 2)
    causes = _causes(failing.values())
    header = _header(list(failing.values()), len(causes))
    if len(header) + len(id_block) + 1 > budget_chars:
        header += " The id list alone exceeds the token budget; it is kept whole, details are cut."
    body = _body(causes, budget_chars - len(header) - len(id_block) - 2, list(failing.values()), raw_output)
    text = "\n".join(part for part in (header, body, id_block) if part)
    return Condensed(text, ids, estimate_tokens(text))


def _failing(checks: Iterable[CheckResult]) -> dict[str, CheckResult]:
    found: dict[str, CheckResult] = {}
    for check in checks:
        status = check.status
        # Identity tests, not `.failing`: this runs once per check of a 100k-test log.
        if status is not CheckStatus.FAILED and status is not CheckStatus.ERROR:
            continue
        old = found.get(check.check_id)
        # One id, several reports (a call failure and a teardown error): keep the more informative one.
        if old is None or (not old.message and check.message) or (
            old.status is CheckStatus.FAILED and check.status is CheckStatus.ERROR and check.message
        ):
            found[check.check_id] = check
    return found


def _header(failing: list[CheckResult], causes: int) -> str:
    errors = sum(1 for c in failing if c.status is CheckStatus.ERROR)
    kinds = f"{len(failing) - errors} failed, {errors} errors" if errors else f"{len(failing)} failed"
    return f"{len(failing)} failing checks ({kinds}), {causes} distinct causes."


def _causes(failing: Iterable[CheckResult]) -> list[_Cause]:
    groups: dict[tuple[str, str], list[CheckResult]] = {}
    for check in failing:
        groups.setdefault((normalise(check.message), check.location), []).append(check)
    causes = []
    for members in groups.values():
        members.sort(key=lambda c: c.check_id)
        first = members[0]
        detail = tuple(line[:_LINE_MAX] for line in first.detail.splitlines()[:_DETAIL_MAX_LINES] if line.strip())
        causes.append(_Cause(len(members), first.message or "(no message)", first.location, first.check_id, detail))
    causes.sort(key=lambda c: (-c.count, c.location, c.message, c.first_id))
    return causes


def _cause_line(number: int, cause: _Cause) -> str:
    where = f" at {cause.location}" if cause.location else ""
    message = _SPACE.sub(" ", cause.message)[:_LINE_MAX]
    line = f"{number}. [{cause.count}x]{where}: {message}"
    return f"{line}\n   e.g. {cause.first_id}" if cause.count > 1 else f"{line}\n   in {cause.first_id}"


def _body(causes: list[_Cause], room: int, failing: list[CheckResult], raw_output: str | None) -> str:
    """Cause lines, then details, then raw log lines, each added only while it fits in `room`."""
    notice = f"[{len(causes)} of {len(causes)} causes cut by the token budget; all ids are listed below]"
    room -= len(notice) + 1  # the notice must always fit if something gets cut
    lines: list[str] = ["Causes (most frequent first):"]
    used = len(lines[0]) + 1
    for number, cause in enumerate(causes, 1):
        line = _cause_line(number, cause)
        if number > 1 and used + len(line) + 1 > room:
            break  # the most frequent cause is part of the floor, like the ids
        lines.append(line)
        used += len(line) + 1
    shown = len(lines) - 1
    if shown == 0:
        lines = []
    used = _add_details(lines, causes[:shown], used, room)
    if raw_output and any(not c.message for c in failing):
        used = _add_raw(lines, raw_output, used, room)
    if shown < len(causes):
        lines.append(f"[{len(causes) - shown} of {len(causes)} causes cut by the token budget; "
                     "all ids are listed below]")
    return "\n".join(lines)


def _add_details(lines: list[str], causes: list[_Cause], used: int, room: int) -> int:
    for number, cause in enumerate(causes, 1):
        excerpt = [d for d in cause.detail if d.strip() != cause.message.strip() and d.strip() != cause.location]
        if not excerpt:
            continue
        block = "\n".join(f"   | {d}" for d in excerpt)
        if used + len(block) + 1 > room:
            break
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{number}. ["))
        lines[index] = f"{lines[index]}\n{block}"
        used += len(block) + 1
    return used


def _add_raw(lines: list[str], raw_output: str, used: int, room: int) -> int:
    seen: set[str] = set()
    picked: list[str] = []
    for line in raw_output.splitlines():
        if not _ERRORISH.search(line):
            continue
        key = normalise(line)
        if key in seen:
            continue
        seen.add(key)
        picked.append(f"   > {line.strip()[:_LINE_MAX]}")
        if len(picked) >= _RAW_MAX_LINES:
            break
    block = "\n".join(["Log lines that look like errors:", *picked]) if picked else ""
    if block and used + len(block) + 1 <= room:
        lines.append(block)
        used += len(block) + 1
    return used


def _stem(check_id: str) -> str:
    bracket = check_id.find("[")
    if bracket > 0:
        return check_id[:bracket]
    for separator in ("::", ":", "."):
        cut = check_id.rfind(separator)
        if cut > 0:
            return check_id[:cut + len(separator)]
    return check_id


def _id_block(ids: tuple[str, ...], plain_room: int) -> str:
    plain = "\n".join(ids)
    if len(plain) <= plain_room:
        return f"Failing ids ({len(ids)}):\n{plain}"
    groups: dict[str, list[str]] = {}
    for check_id in ids:
        groups.setdefault(_stem(check_id), []).append(check_id)
    lines = [f"Failing ids ({len(ids)}; a line followed by '{STEM_MARK}' lines is a shared prefix):"]
    for stem in sorted(groups):
        members = groups[stem]
        if len(members) == 1:
            lines.append(members[0])
            continue
        lines.append(stem)
        lines.extend(f"  {STEM_MARK}{m[len(stem):]}" for m in members)
    return "\n".join(lines)


def parse_failing_ids(text: str) -> list[str]:
    """Every failing id written in a condensed text, in either the plain or the compact form."""
    start = text.rfind("\nFailing ids (")
    if start < 0:
        return []
    lines = text[start + 1:].split("\n")[1:]  # split, not splitlines: ids may hold \x0c, \u2028, ...
    mark = f"  {STEM_MARK}"
    ids: list[str] = []
    stem = ""
    for index, line in enumerate(lines):
        if line.startswith(mark):
            ids.append(stem + line[len(mark):])
        elif index + 1 < len(lines) and lines[index + 1].startswith(mark):
            stem = line
        else:
            ids.append(line)
    return ids


PROFILE_FORMATS = ("speedscope", "perf", "xctrace")


def condense_text(text: str, fmt: str = "auto", *, token_budget: int = 600, exit_code: int | None = None,
                  gate: str = "condense") -> Condensed:
    """Parse raw tool output (picking the parser when `fmt == "auto"`), then condense it.

    Profiler outputs (speedscope, perf script, xctrace XML) become a top-functions table instead. With
    `exit_code=None` (a log file, exit status unknown) a log no parser understands is failing only
    when it has error-looking lines.
    """
    from onloop.gates import profile
    from onloop.gates.parsers import GateOutput, detect_format, parse_gate_output
    from onloop.gates.parsers.exitcode import error_lines
    from onloop.gates.parsers.pytest_text import parse_failing
    text = strip_escapes(text)
    profile_fmt = fmt if fmt in PROFILE_FORMATS else (profile.detect_profile_format(text) if fmt == "auto" else None)
    if profile_fmt:
        rendered = profile.render(profile.summarize(text, profile_fmt))
        return Condensed(rendered, (), estimate_tokens(rendered))
    output = GateOutput(gate, exit_code, False, text)
    name = detect_format(output) if fmt == "auto" else fmt
    checks = parse_failing(text, gate) if name == "pytest" else None
    if checks is None:
        checks = parse_gate_output(output, fmt)
    if exit_code is None and [c.check_id for c in checks] == [f"{gate}:command"]:
        # Nothing parsed and no exit status: the log is failing only if something in it looks like an error.
        errors = error_lines(text)
        status = CheckStatus.FAILED if errors else CheckStatus.PASSED
        checks = [CheckResult(f"{gate}:command", status, errors[0] if errors else "", detail="\n".join(errors))]
    return condense(checks, token_budget=token_budget, raw_output=text)


_TAIL_SAMPLE = 32768


def condense_file(path: Path, fmt: str = "auto", *, token_budget: int = 600) -> Condensed:
    """`condense_text` on a file, without decoding the parts of a big pytest log nobody reads.

    A 100,000-line `pytest -v` log is mostly PASSED lines. When the file is a pytest log with a short
    test summary, only the tail from the first ERRORS/FAILURES heading on is read and decoded (found
    with `mmap.rfind`, backwards from the end); anything else is read whole.
    """
    size = path.stat().st_size
    if size < 4 * _TAIL_SAMPLE or fmt not in ("auto", "pytest"):
        return condense_text(path.read_bytes().decode("utf-8", "replace"), fmt, token_budget=token_budget)
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        tail = _pytest_tail(view, fmt)
        if tail is None:
            return condense_text(view[:].decode("utf-8", "replace"), fmt, token_budget=token_budget)
    return condense_text(tail, "pytest", token_budget=token_budget)


def _pytest_tail(view: mmap.mmap, fmt: str) -> str | None:
    """The decoded tail of a pytest log from its first failure heading, or None if it is not one."""
    from onloop.gates.parsers import GateOutput, detect_format

    sample = strip_escapes((view[:_TAIL_SAMPLE] + b"\n" + view[-_TAIL_SAMPLE:]).decode("utf-8", "replace"))
    if fmt == "auto" and detect_format(GateOutput("condense", None, False, sample)) != "pytest":
        return None
    summary = view.rfind(b" short test summary info ")
    if summary < 0:
        return None
    summary_text = view[summary:].decode("utf-8", "replace")
    begin = view.rfind(b"\n", 0, summary) + 1
    # ERRORS come before FAILURES; look for each only when the summary says there are some, so an
    # absent heading does not cost a backwards scan of the whole file.
    for title, marker in ((b" FAILURES =", "\nFAILED "), (b" ERRORS =", "\nERROR ")):
        if marker in summary_text:
            found = view.rfind(title, 0, begin)
            if found >= 0:
                begin = view.rfind(b"\n", 0, found) + 1
    return view[begin:].decode("utf-8", "replace")
