"""The generic fallback: one check per gate command, decided by the exit code."""

from __future__ import annotations

from onloop.gates.checks import CheckResult
from onloop.gates.parsers.base import GateOutput


class ExitCodeParser:
    name = "exit"

    def detect(self, output: GateOutput) -> bool:
        return True

    def parse(self, output: GateOutput) -> list[CheckResult]:
        from onloop.gates.parsers import command_check

        return [command_check(output)]
