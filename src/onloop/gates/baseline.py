"""Baseline comparison, per check: what a gate result means against the untouched base commit.

- a check failing in the baseline and still failing is *pre-existing*: it neither blocks nor counts;
- a check failing now that did not fail in the baseline is *new*: it blocks "done";
- a check failing in the previous state (the baseline, or the last iteration) that passes now is
  *fixed*: it counts as progress;
- a check passing in the baseline that is missing now, or skipped now, has *vanished*: it counts as a
  new failure. Making tests disappear (an exit in the code under test, a computed skip) must never
  turn a gate green, whatever trick the diff audit did not recognise.
The failure fingerprint (for the `stuck` rule) is a hash of the new failures' ids and normalised
messages: the same wall hit again gives the same fingerprint even if line numbers or addresses move.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from onloop.gates.runner import GateRun

_VOLATILE = re.compile(r"0x[0-9a-fA-F]+|\d+(\.\d+)?|'[^']*'|\"[^\"]*\"")


@dataclass(frozen=True, slots=True)
class GateVerdict:
    gate: str
    required: bool
    new_failures: tuple[str, ...]
    preexisting: tuple[str, ...]
    fixed: tuple[str, ...]
    vanished: tuple[str, ...]  # baseline-passing checks missing or skipped now (also in new_failures)
    checks_total: int
    exit_code: int | None
    timed_out: bool
    duration: float

    @property
    def ok(self) -> bool:
        """Passes against the baseline: nothing fails that did not already fail before the run."""
        return not self.new_failures

    @property
    def status(self) -> str:
        if self.new_failures:
            return "fail"
        return "pass (pre-existing failures)" if self.preexisting else "pass"

    def to_dict(self) -> dict[str, object]:
        return {
            "gate": self.gate, "required": self.required, "status": self.status,
            "new_failures": list(self.new_failures), "preexisting": list(self.preexisting),
            "fixed": list(self.fixed), "vanished": list(self.vanished), "checks_total": self.checks_total,
            "exit_code": self.exit_code,
            "timed_out": self.timed_out, "duration": round(self.duration, 3),
        }


def compare(current: GateRun, baseline: GateRun | None, previous_failing: frozenset[str],
            ignore: frozenset[str] = frozenset()) -> GateVerdict:
    """`ignore`: flaky and quarantined checks, which neither block nor count as progress or regression."""
    base_failing = (baseline.failing if baseline else frozenset()) - ignore
    now_failing = current.failing - ignore
    previous_failing = previous_failing - ignore
    passing_now = {c.check_id for c in current.checks if not c.status.failing and c.status.value == "passed"}
    fixed = sorted(cid for cid in previous_failing if cid in passing_now or _vanished_ok(cid, current))
    vanished = _vanished(current, baseline) - ignore
    return GateVerdict(
        gate=current.gate,
        required=current.required,
        new_failures=tuple(sorted((now_failing - base_failing) | vanished)),
        preexisting=tuple(sorted(now_failing & base_failing)),
        fixed=tuple(fixed),
        vanished=tuple(sorted(vanished)),
        checks_total=len(current.checks),
        exit_code=current.exit_code,
        timed_out=current.timed_out,
        duration=current.duration,
    )


def _vanished(current: GateRun, baseline: GateRun | None) -> set[str]:
    if baseline is None:
        return set()
    before = {c.check_id for c in baseline.checks if c.status.value == "passed" and not _command_level(c.check_id)}
    present = {c.check_id for c in current.checks if c.status.value != "skipped"}
    return before - present


def _command_level(check_id: str) -> bool:
    return check_id.endswith((":command", ":timeout"))


def _vanished_ok(check_id: str, current: GateRun) -> bool:
    # A command-level failure (`tests:command`) that no longer appears because the command now passes.
    return _command_level(check_id) and current.exit_code == 0 and not current.timed_out


def fingerprint(runs: Mapping[str, GateRun], verdicts: Mapping[str, GateVerdict]) -> str | None:
    parts: list[str] = []
    for name in sorted(verdicts):
        for check_id in verdicts[name].new_failures:
            check = runs[name].check(check_id)
            message = _VOLATILE.sub("#", check.message if check else "")
            parts.append(f"{name}|{check_id}|{message}")
    if not parts:
        return None
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
