"""ruff check output: the default full text, `--output-format concise`, and `--output-format json`.

Ids come from `_lint.to_checks` (`ruff:F401:src/a.py:os#0`, no line numbers: see that module for
why). JSON filenames are absolute; they are made relative to the working directory so that the id of
a diagnostic is the same in the baseline worktree and in the run's worktree.
"""

from __future__ import annotations

import json
import re
from typing import Any

from onloop.gates.checks import CheckResult
from onloop.gates.parsers._lint import Diagnostic, relative_path, root_of, sample, to_checks
from onloop.gates.parsers.base import GateOutput

_CODE = r"(?P<code>[A-Z]{1,5}\d{1,5}|[a-z]+(?:-[a-z]+)+)"
_CONCISE = re.compile(
    rf"^(?P<path>[^\s:][^:\n]*):(?P<line>\d+):(?P<col>\d+): {_CODE}:? (?:\[\*\] )?(?P<msg>.+)$", re.MULTILINE
)
_FULL = re.compile(rf"^{_CODE}:? (?:\[\*\] )?(?P<msg>.+)\n\s*--> (?P<path>.+?):(?P<line>\d+):(?P<col>\d+)$",
                   re.MULTILINE)
_SUMMARY = re.compile(r"^(Found \d+ errors?\.|All checks passed!)$", re.MULTILINE)


class RuffParser:
    name = "ruff"

    def detect(self, output: GateOutput) -> bool:
        text = sample(output.output)
        if text.lstrip().startswith("[") and '"noqa_row"' in text[:4000]:
            return True
        return bool(_SUMMARY.search(text)) and bool(
            _CONCISE.search(text) or _FULL.search(text) or "All checks passed!" in text)

    def parse(self, output: GateOutput) -> list[CheckResult]:
        text = output.output
        if text.lstrip().startswith("["):
            return to_checks(_from_json(text, root_of(output)))
        pattern = _CONCISE if _CONCISE.search(text) else _FULL
        return to_checks(
            Diagnostic("ruff", m["code"], relative_path(m["path"], root_of(output)), int(m["line"]), int(m["col"]),
                       m["msg"].strip())
            for m in pattern.finditer(text)
        )


def _from_json(text: str, root: str | None) -> list[Diagnostic]:
    try:
        items: Any = json.loads(text[text.index("["):text.rindex("]") + 1])
    except ValueError:
        return []
    found = []
    for item in items if isinstance(items, list) else []:
        location = item.get("location") or {}
        found.append(Diagnostic(
            "ruff", str(item.get("code") or item.get("name") or "ruff"),
            relative_path(str(item.get("filename", "")), root),
            int(location.get("row") or 0), int(location.get("column") or 0), str(item.get("message", "")),
        ))
    return found
