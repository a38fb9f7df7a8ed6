"""ESLint `-f json`: an array of file results, each with `filePath` and `messages`.

Per ESLint's formatter docs a message has `ruleId` (null for a parsing error, with `fatal: true`),
`severity` (2 error, 1 warning), `message`, `line`, `column`. Ids: `eslint:<rule>:<path>:<key>#n`.
"""

from __future__ import annotations

import json
from typing import Any

from onloop.gates.checks import CheckResult
from onloop.gates.parsers._lint import Diagnostic, relative_path, root_of, to_checks
from onloop.gates.parsers.base import GateOutput


class EslintParser:
    name = "eslint"

    def detect(self, output: GateOutput) -> bool:
        head = output.output.lstrip()[:4000]
        return head.startswith("[") and '"filePath"' in head and '"messages"' in head

    def parse(self, output: GateOutput) -> list[CheckResult]:
        text = output.output
        try:
            data: Any = json.loads(text[text.index("["):text.rindex("]") + 1])
        except ValueError:
            return []
        found = []
        for result in data if isinstance(data, list) else []:
            path = relative_path(str(result.get("filePath", "")), root_of(output))
            for msg in result.get("messages", []):
                rule = msg.get("ruleId") or ("parse-error" if msg.get("fatal") else "eslint")
                found.append(Diagnostic("eslint", str(rule), path, int(msg.get("line") or 0),
                                        int(msg.get("column") or 0), str(msg.get("message", "")),
                                        failing=msg.get("severity") == 2))
        return to_checks(found)
