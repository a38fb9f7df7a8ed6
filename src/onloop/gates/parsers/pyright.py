"""pyright `--outputjson`: one object with `generalDiagnostics` (0-based line and character).

Format per pyright's documentation (docs/command-line.md, "JSON Output"): each diagnostic has `file`,
`severity` ("error" | "warning" | "information"), `message`, optional `rule`, and `range.start`.
Ids: `pyright:<rule>:<path>:<key>#n` (see `_lint`).
"""

from __future__ import annotations

import json
from typing import Any

from onloop.gates.checks import CheckResult
from onloop.gates.parsers._lint import Diagnostic, relative_path, root_of, to_checks
from onloop.gates.parsers.base import GateOutput


class PyrightParser:
    name = "pyright"

    def detect(self, output: GateOutput) -> bool:
        head = output.output.lstrip()[:4000]
        return head.startswith("{") and '"generalDiagnostics"' in output.output

    def parse(self, output: GateOutput) -> list[CheckResult]:
        text = output.output
        try:
            data: Any = json.loads(text[text.index("{"):text.rindex("}") + 1])
        except ValueError:
            return []
        diagnostics = data.get("generalDiagnostics", []) if isinstance(data, dict) else []
        root = root_of(output)
        return to_checks(_diagnostic(item, root) for item in diagnostics if item.get("severity") != "information")


def _diagnostic(item: dict[str, Any], root: str | None) -> Diagnostic:
    start = (item.get("range") or {}).get("start") or {}
    return Diagnostic(
        "pyright", str(item.get("rule") or item.get("severity") or "error"),
        relative_path(str(item.get("file", "")), root), int(start.get("line", -1)) + 1,
        int(start.get("character", -1)) + 1, str(item.get("message", "")).split("\n")[0],
        failing=item.get("severity") == "error",
    )
