"""Check results: the unit of truth of a gate.

A gate (a command such as `pytest`) yields one `CheckResult` per check it can tell apart (a test id, a
lint rule at a location); when its output cannot be parsed, the gate as a whole is one check. Baseline
comparison, flaky handling and the verified delta all work per check, not per command.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CheckStatus(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"  # the check could not run (collection error, setup error)
    SKIPPED = "skipped"
    # A differential gate's input on which the reference itself failed (crashed, timed out, could not
    # run, or flooded its output): nothing can be said of the candidate there. Counted and reported,
    # never a candidate mismatch, never silently dropped.
    REFERENCE_FAILED = "reference-failed"

    @property
    def failing(self) -> bool:
        return self in (CheckStatus.FAILED, CheckStatus.ERROR)


@dataclass(frozen=True, slots=True)
class CheckResult:
    check_id: str  # stable across runs: e.g. "tests/test_calc.py::test_add" or "ruff:F401:src/a.py"
    status: CheckStatus
    message: str = ""  # first relevant line of the failure
    location: str = ""  # file:line where the failure points
    detail: str = ""  # a longer excerpt (traceback), cut to a few lines
