"""TypeScript compiler output: `file(line,col): error TS2322: message` (the default when not a TTY)
and the `--pretty` form `file:line:col - error TS2322: message`.

Ids: `tsc:TS2322:<path>:<key>#n` (see `_lint`). Continuation lines of a multi-line message (indented)
are dropped: the first line names the problem.
"""

from __future__ import annotations

import re

from onloop.gates.checks import CheckResult
from onloop.gates.parsers._lint import Diagnostic, relative_path, root_of, sample, to_checks
from onloop.gates.parsers.base import GateOutput

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PLAIN = re.compile(r"^(?P<path>[^\s(][^(\n]*)\((?P<line>\d+),(?P<col>\d+)\): (?P<sev>error|warning) "
                    r"(?P<code>TS\d+): (?P<msg>.+)$", re.MULTILINE)
_PRETTY = re.compile(r"^(?P<path>[^\s:][^:\n]*):(?P<line>\d+):(?P<col>\d+) - (?P<sev>error|warning) "
                     r"(?P<code>TS\d+): (?P<msg>.+)$", re.MULTILINE)


class TscParser:
    name = "tsc"

    def detect(self, output: GateOutput) -> bool:
        text = _ANSI.sub("", sample(output.output))
        return bool(_PLAIN.search(text) or _PRETTY.search(text))

    def parse(self, output: GateOutput) -> list[CheckResult]:
        text = _ANSI.sub("", output.output)
        matches = [*_PLAIN.finditer(text), *_PRETTY.finditer(text)]
        return to_checks(
            Diagnostic("tsc", m["code"], relative_path(m["path"], root_of(output)), int(m["line"]), int(m["col"]),
                       m["msg"].strip(), failing=m["sev"] == "error")
            for m in matches
        )
