"""mypy output: the default text (`path:line: error: message  [code]`) and `-O json` (JSON lines).

Notes (`note:`) are context for the error above them and are folded into nothing: the error line is
what the model needs. Ids: `mypy:<code>:<path>:<key>#n` (see `_lint` for why no line numbers).

`--pretty` wraps an error's message to the terminal's width (`MYPY_FORCE_TERMINAL_WIDTH`, `COLUMNS`)
and puts the source line and a `^~~~` marker under it. The wrap only ever replaces one space of the
message by a newline (mypy's `soft_wrap`), and the continuation lines are not indented, while the
source and marker lines are (by four spaces). So the message is the error line joined with the
unindented lines after it, up to the next diagnostic, source line or summary: the same message,
error code and id as without `--pretty`, whatever the width.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers._lint import Diagnostic, relative_path, root_of, sample, to_checks
from onloop.gates.parsers.base import GateOutput

# The path may hold colons (`tools/report:total.py`): it ends at the first `.py:<line>:` from the left.
_HEAD = re.compile(
    r"(?P<path>[^\s:][^\n]*?\.pyi?):(?P<line>\d+):(?:(?P<col>\d+):)?(?:\d+:\d+:)? "
    r"(?P<sev>error|warning|note):(?P<msg>.*)"
)
_CODE = re.compile(r"^(?P<msg>.*?)  \[(?P<code>[\w-]+)\]$", re.DOTALL)
# A line that is no continuation of a wrapped message: another diagnostic (`path:line: note:`, or
# `path: note: In function "f":` from --show-error-context), or mypy's summary.
_NOT_CONTINUATION = re.compile(r"[^\s:][^:\n]*\.pyi?:(?:\d+:)* ?\w+:|Found \d+ errors? in |Success: ")
_SUMMARY = re.compile(r"^(Found \d+ errors? in \d+ files? \(checked|Success: no issues found)", re.MULTILINE)
_FOUND = re.compile(r"^Found (\d+) errors? in \d+ files? \(checked", re.MULTILINE)
_WRAP_MAX_LINES = 50


class MypyParser:
    name = "mypy"

    def detect(self, output: GateOutput) -> bool:
        text = sample(output.output)
        if _SUMMARY.search(text):
            return True
        first = text.lstrip()[:2000]
        return first.startswith("{") and '"severity"' in first and '"hint"' in first

    def parse(self, output: GateOutput) -> list[CheckResult]:
        text = output.output
        if text.lstrip().startswith("{"):
            return to_checks(_from_json_lines(text, root_of(output)))
        found = list(_from_text(text, root_of(output)))
        return to_checks(found) + _counts(output.gate, text, sum(1 for d in found if d.failing))


def _counts(gate: str, text: str, parsed: int) -> list[CheckResult]:
    """An ERROR `<gate>:counts` check when mypy's own `Found N errors` (summed over its runs) is not
    the number of errors read: an error the parser could not place is never silently absent."""
    said = [int(n) for n in _FOUND.findall(text)]
    if not said or sum(said) == parsed:
        return []
    return [CheckResult(f"{gate}:counts", CheckStatus.ERROR,
                        f"mypy says {sum(said)} error(s), {parsed} could be read from its output")]


def _from_text(text: str, root: str | None) -> Iterator[Diagnostic]:
    lines = text.splitlines()
    for index, line in enumerate(lines):
        head = _HEAD.fullmatch(line)
        if head is None or head["sev"] == "note":
            continue
        message = _CODE.fullmatch(head["msg"]) or _CODE.fullmatch(_unwrapped(head["msg"], lines, index + 1))
        text_of_message, code = (message["msg"], message["code"]) if message else (head["msg"], None)
        yield Diagnostic("mypy", code or "error", relative_path(head["path"], root), int(head["line"]),
                         int(head["col"] or 0), text_of_message.strip(), failing=head["sev"] == "error")


def _unwrapped(first: str, lines: list[str], start: int) -> str:
    """The message that `--pretty` wrapped over the lines from `start` on, joined back with the spaces
    the wrap took away. It ends at its error code, or before the first line that is no part of it."""
    message = first
    for line in lines[start:start + _WRAP_MAX_LINES]:
        # A continuation starts with a word; with one space at most (the empty word before "  [code]").
        if not line.strip() or line.startswith("  ") or _NOT_CONTINUATION.match(line):
            break
        message = f"{message} {line}"
        if _CODE.fullmatch(message):
            break
    return message


def _from_json_lines(text: str, root: str | None) -> list[Diagnostic]:
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if item.get("severity") == "note":
            continue
        found.append(Diagnostic(
            "mypy", str(item.get("code") or "error"), relative_path(str(item.get("file", "")), root),
            int(item.get("line") or 0), max(0, int(item.get("column") or 0)), str(item.get("message", "")),
            failing=item.get("severity") == "error",
        ))
    return found
