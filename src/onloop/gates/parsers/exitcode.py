"""The generic fallback: one check per gate command, decided by the exit code.

Any tool onloop has no parser for still gives back-pressure: the command's exit code is the status,
the first error-looking line is the message, and up to a dozen distinct error-looking lines (numbers
and quoted values blanked when comparing, so a line repeated for 500 inputs counts once) are the
detail the condenser can show.
"""

from __future__ import annotations

import re

from onloop.gates.checks import CheckResult
from onloop.gates.parsers.base import GateOutput

# Plain words, and exception class names (`ImportError`, `ModuleNotFoundError`, `ValueError:`), which have
# no word boundary before "Error".
_ERRORISH = re.compile(r"\b(error|errors|failed|failure|fail|exception|traceback|panic|fatal)\b|"
                       r"(?-i:\b[A-Z]\w*(?:Error|Exception)\b)", re.IGNORECASE)
_VARYING = re.compile(r"\d+|'[^']*'|\"[^\"]*\"|0x[0-9a-fA-F]+")
_MAX_LINES = 12


def error_lines(text: str, limit: int = _MAX_LINES) -> list[str]:
    """Distinct error-looking lines, in order of first appearance."""
    seen: set[str] = set()
    found: list[str] = []
    for line in text.splitlines():
        if not _ERRORISH.search(line):
            continue
        stripped = line.strip()[:300]
        key = _VARYING.sub("#", stripped)
        if key in seen:
            continue
        seen.add(key)
        found.append(stripped)
        if len(found) >= limit:
            break
    return found


class ExitCodeParser:
    name = "exit"

    def detect(self, output: GateOutput) -> bool:
        return True

    def parse(self, output: GateOutput) -> list[CheckResult]:
        from dataclasses import replace

        from onloop.gates.parsers import command_check

        check = command_check(output)
        if not check.status.failing:
            return [check]
        return [replace(check, detail="\n".join(error_lines(output.output)))]
