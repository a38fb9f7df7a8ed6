"""Baseline comparison, per check: what a gate result means against the untouched base commit.

- a check failing in the baseline is a *target*: it must pass for "done", unless the operator
  tolerates it (`gates.NAME.tolerate` ids or globs, or `tolerate_preexisting = true`); a tolerated
  check that still fails neither blocks nor counts. A target is met when it passes now; for a whole
  module that failed to collect (the TDD case where a test imports what does not exist yet), when it
  is gone and every test its base version defines is there and passes under it (`<target>::...`, or
  unittest's dotted `<target>.Case.test`); for a linter's or type checker's diagnostic, when the tool
  ran to its end and no longer reports it. A test id that is gone is never met, whatever stands under
  its name now. An exit-code-only gate failing at baseline is a target as a whole (`<gate>:command`);
- a check failing now that did not fail in the baseline is *new*: it blocks "done";
- a check failing in the previous state (the baseline, or the last iteration) that passes now is
  *fixed*: it counts as progress (a tolerated one does not);
- a check passing in the baseline that is missing now, or skipped now, has *vanished*: it counts as a
  new failure. Making tests disappear (an exit in the code under test, a computed skip) must never
  turn a gate green, whatever trick the diff audit did not recognise;
- a *broken* run (it could not start, was killed, its runner failed) is not a result: the verdict
  is not ok, whatever its checks say.
The failure fingerprint (for the `stuck` rule) is a hash of the new failures' ids and normalised
messages (and a broken run's reason): the same wall hit again gives the same fingerprint even if
line numbers or addresses move.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from onloop.gates.checks import CheckStatus
from onloop.gates.runner import REPORT_PLUGIN, GateRun

_VOLATILE = re.compile(r"0x[0-9a-fA-F]+|\d+(\.\d+)?|'[^']*'|\"[^\"]*\"")

Tolerate = Callable[[str], bool]


def tolerance(ids_or_globs: Iterable[str], everything: bool = False) -> Tolerate:
    """The operator's `tolerate` list as a predicate on check ids (exact ids or fnmatch globs)."""
    patterns = tuple(ids_or_globs)
    if everything:
        return lambda _check_id: True
    return lambda check_id: any(check_id == p or fnmatchcase(check_id, p) for p in patterns)


def _nothing(_check_id: str) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class GateVerdict:
    gate: str
    required: bool
    new_failures: tuple[str, ...]
    tolerated: tuple[str, ...]  # failing at baseline, tolerated by the operator, still failing
    targets: tuple[str, ...]  # failing at baseline and not tolerated: they must pass
    targets_left: tuple[str, ...]  # targets not met yet
    fixed: tuple[str, ...]
    vanished: tuple[str, ...]  # baseline-passing checks missing or skipped now (also in new_failures)
    checks_total: int
    exit_code: int | None
    timed_out: bool
    duration: float
    broken: str | None = None
    report: str = ""
    reference_failed: tuple[str, ...] = ()  # differential inputs the reference itself failed on: not judged

    @property
    def ok(self) -> bool:
        """Passes against the baseline: a real result, nothing new failing, every target met."""
        return self.broken is None and not self.new_failures and not self.targets_left

    @property
    def status(self) -> str:
        if self.broken is not None:
            return "broken"
        if self.new_failures:
            return "fail"
        if self.targets_left:
            return f"fail ({len(self.targets_left)} target(s) left)"
        return "pass (tolerated failures)" if self.tolerated else "pass"

    def to_dict(self) -> dict[str, object]:
        return {
            "gate": self.gate, "required": self.required, "status": self.status, "broken": self.broken,
            "new_failures": list(self.new_failures), "tolerated": list(self.tolerated),
            "targets": len(self.targets), "targets_left": list(self.targets_left), "fixed": list(self.fixed),
            "vanished": list(self.vanished), "checks_total": self.checks_total, "exit_code": self.exit_code,
            "timed_out": self.timed_out, "duration": round(self.duration, 3), "report": self.report,
            "reference_failed": list(self.reference_failed),
        }


def compare(current: GateRun, baseline: GateRun | None, previous_failing: frozenset[str],
            ignore: frozenset[str] = frozenset(), tolerate: Tolerate = _nothing,
            expected: Mapping[str, frozenset[str]] | None = None) -> GateVerdict:
    """`ignore`: flaky and quarantined checks, which neither block nor count as progress or regression.
    `expected`: for a target that was a whole test module failing to collect, the tests its base
    version defines; each must be there and pass for the target to be met."""
    expected = expected or {}
    base_failing = (baseline.failing if baseline else frozenset()) - ignore
    tolerated_all = frozenset(c for c in base_failing if tolerate(c))
    targets = base_failing - tolerated_all
    now_failing = current.failing - ignore
    passing_now = {c.check_id for c in current.checks if c.status is CheckStatus.PASSED}
    met = {t for t in targets if _met(t, current, passing_now, expected.get(t))}
    fixed = sorted(cid for cid in (previous_failing - ignore - tolerated_all)
                   if cid in passing_now or _met(cid, current, passing_now, expected.get(cid)))
    vanished = _vanished(current, baseline) - ignore
    return GateVerdict(
        gate=current.gate,
        required=current.required,
        new_failures=tuple(sorted((now_failing - base_failing) | vanished)),
        tolerated=tuple(sorted(now_failing & tolerated_all)),
        targets=tuple(sorted(targets)),
        targets_left=tuple(sorted(targets - met)),
        fixed=tuple(fixed),
        vanished=tuple(sorted(vanished)),
        checks_total=len(current.checks),
        exit_code=current.exit_code,
        timed_out=current.timed_out,
        duration=current.duration,
        broken=current.broken,
        report=current.report,
        reference_failed=tuple(sorted(c.check_id for c in current.checks
                                      if c.status is CheckStatus.REFERENCE_FAILED)),
    )


def _met(target: str, current: GateRun, passing_now: set[str], expected: frozenset[str] | None) -> bool:
    if current.broken is not None:
        return False
    if target in passing_now:
        return True
    if _command_level(target):
        return current.exit_code == 0 and not current.timed_out
    if current.check(target) is not None:
        return False  # still there, and not passing
    if current.diagnostics:
        return True  # a linter or type checker that ran to its end and no longer reports the problem
    if _failures_only(current):
        return True  # a report that lists failures only (`pytest -q` read as text): everything passed
    if expected is None and "::" in target:
        return False  # a test that is gone is not met, whatever now stands under its name
    under = [c for c in current.checks if is_under(c.check_id, target)]
    if not under or any(c.status is not CheckStatus.PASSED for c in under):
        return False
    return expected is None or all(any(c.check_id == want or c.check_id.startswith(want + "[") for c in under)
                                   for want in expected)


def _failures_only(run: GateRun) -> bool:
    """A run whose report names no passing check and which passed as a whole: its tests are not listed
    when they pass, so an absent target is a fixed one. (Deleting the test instead is the audit's.)"""
    return (run.report != REPORT_PLUGIN and run.exit_code == 0 and not run.timed_out and not run.failing
            and not any(c.status in (CheckStatus.PASSED, CheckStatus.SKIPPED) and not _command_level(c.check_id)
                        for c in run.checks))


def is_under(check_id: str, target: str) -> bool:
    """A check inside a module or class: pytest's `path.py::name`, unittest's dotted `module.Case.name`."""
    return check_id.startswith(target + "::") or ("/" not in target and check_id.startswith(target + "."))


def _vanished(current: GateRun, baseline: GateRun | None) -> set[str]:
    if baseline is None:
        return set()
    before = {c.check_id for c in baseline.checks if c.status is CheckStatus.PASSED and not _command_level(c.check_id)}
    present = {c.check_id for c in current.checks if c.status is not CheckStatus.SKIPPED}
    return before - present


def _command_level(check_id: str) -> bool:
    return check_id.endswith((":command", ":timeout"))


def fingerprint(runs: Mapping[str, GateRun], verdicts: Mapping[str, GateVerdict]) -> str | None:
    parts: list[str] = []
    for name in sorted(verdicts):
        if verdicts[name].broken:
            parts.append(f"{name}|broken|{_VOLATILE.sub('#', verdicts[name].broken or '')}")
        for check_id in verdicts[name].new_failures:
            check = runs[name].check(check_id)
            message = _VOLATILE.sub("#", check.message if check else "")
            parts.append(f"{name}|{check_id}|{message}")
    if not parts:
        return None
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
