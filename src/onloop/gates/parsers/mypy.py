"""mypy output: the default text (`path:line: error: message  [code]`) and `-O json` (JSON lines).

Notes (`note:`) are context for the error above them and are folded into nothing: the error line is
what the model needs. Ids: `mypy:<code>:<path>:<key>#n` (see `_lint` for why no line numbers).
"""

from __future__ import annotations

import json
import re

from onloop.gates.checks import CheckResult
from onloop.gates.parsers._lint import Diagnostic, relative_path, root_of, sample, to_checks
from onloop.gates.parsers.base import GateOutput

_TEXT = re.compile(
    r"^(?P<path>[^\s:][^:\n]*\.pyi?):(?P<line>\d+):(?:(?P<col>\d+):)? (?P<sev>error|warning): (?P<msg>.+?)"
    r"(?:  \[(?P<code>[\w-]+)\])?$",
    re.MULTILINE,
)
_SUMMARY = re.compile(r"^(Found \d+ errors? in \d+ files? \(checked|Success: no issues found)", re.MULTILINE)


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
        return to_checks(
            Diagnostic("mypy", m["code"] or "error", relative_path(m["path"], root_of(output)), int(m["line"]),
                       int(m["col"] or 0), m["msg"].strip(), failing=m["sev"] == "error")
            for m in _TEXT.finditer(text)
        )


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
