"""The gate output parser interface.

A parser turns what a gate command produced (its combined output, its exit code and, when the gate
wrote one, a report file such as junit XML) into check results. One small module per tool; they
register by name through `onloop.gates.parsers.registry`, like a third-party plugin would (entry point
group `onloop.gate_parsers`). `detect` lets `format = "auto"` pick a parser from the output itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from onloop.gates.checks import CheckResult


@dataclass(frozen=True, slots=True)
class GateOutput:
    gate: str
    exit_code: int | None
    timed_out: bool
    output: str  # combined stdout and stderr (possibly cut to its head and tail)
    report_path: Path | None = None  # a report file the gate wrote (junit XML), if any
    cwd: Path | None = None  # where the gate ran: absolute paths in its output are made relative to it


class GateParser(Protocol):
    name: str

    def detect(self, output: GateOutput) -> bool:
        """True when this parser recognises the output (used by format = "auto")."""
        ...

    def parse(self, output: GateOutput) -> list[CheckResult]:
        """The checks found; an empty list means "could not tell", and the exit code decides."""
        ...
