"""Verdicts against the baseline: targets must pass, tolerated ones need not, broken is no result."""

from __future__ import annotations

from pathlib import Path

from onloop.gates.baseline import compare, fingerprint, tolerance
from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.runner import GateRun, worst_of

P, F, E, S = CheckStatus.PASSED, CheckStatus.FAILED, CheckStatus.ERROR, CheckStatus.SKIPPED


def run(checks: dict[str, CheckStatus], *, exit_code: int = 0, broken: str | None = None) -> GateRun:
    results = tuple(CheckResult(k, v, f"{k} {v.value}") for k, v in checks.items())
    return GateRun("tests", exit_code, False, 0.1, results, Path("/dev/null"), broken=broken)


BASE = run({"t.py::ok": P, "t.py::spec": F, "t.py::legacy": F}, exit_code=1)


def test_checks_failing_at_baseline_are_targets() -> None:
    verdict = compare(run({"t.py::ok": P, "t.py::spec": F, "t.py::legacy": F}, exit_code=1), BASE, BASE.failing)

    assert verdict.targets == ("t.py::legacy", "t.py::spec")
    assert verdict.targets_left == ("t.py::legacy", "t.py::spec")
    assert not verdict.new_failures and not verdict.ok and verdict.status == "fail (2 target(s) left)"


def test_a_target_met_is_progress_and_tolerated_ones_neither_block_nor_count() -> None:
    tolerate = tolerance(["t.py::leg*"])
    verdict = compare(run({"t.py::ok": P, "t.py::spec": P, "t.py::legacy": F}, exit_code=1), BASE, BASE.failing,
                      tolerate=tolerate)

    assert verdict.ok and verdict.status == "pass (tolerated failures)"
    assert verdict.fixed == ("t.py::spec",) and verdict.tolerated == ("t.py::legacy",)
    assert verdict.targets_left == ()
    fixed_tolerated = compare(run({"t.py::ok": P, "t.py::spec": P, "t.py::legacy": P}), BASE, BASE.failing,
                              tolerate=tolerate)
    assert fixed_tolerated.fixed == ("t.py::spec",), "a tolerated check that passes is not progress"


def test_tolerate_everything_keeps_the_old_rule() -> None:
    verdict = compare(run({"t.py::ok": P, "t.py::spec": F, "t.py::legacy": F}, exit_code=1), BASE, BASE.failing,
                      tolerate=tolerance([], everything=True))

    assert verdict.ok and verdict.targets == ()


def test_a_module_that_failed_to_collect_is_met_when_every_test_in_it_passes() -> None:
    base = run({"tests/test_spec.py": E, "tests/test_calc.py::test_add": P}, exit_code=1)

    met = compare(run({"tests/test_spec.py::test_mul": P, "tests/test_spec.py::test_div": P,
                       "tests/test_calc.py::test_add": P}), base, base.failing)
    half = compare(run({"tests/test_spec.py::test_mul": P, "tests/test_spec.py::test_div": F,
                        "tests/test_calc.py::test_add": P}, exit_code=1), base, base.failing)
    skipped = compare(run({"tests/test_spec.py::test_mul": S, "tests/test_calc.py::test_add": P}), base, base.failing)
    gone = compare(run({"tests/test_calc.py::test_add": P}), base, base.failing)

    assert met.ok and met.fixed == ("tests/test_spec.py",)
    assert half.targets_left == ("tests/test_spec.py",)
    assert skipped.targets_left == ("tests/test_spec.py",), "skipped tests do not meet a target"
    assert gone.targets_left == ("tests/test_spec.py",), "a target that disappears is not met"


def test_an_exit_code_gate_failing_at_baseline_is_a_target_as_a_whole() -> None:
    base = run({"tests:command": F}, exit_code=1)

    assert compare(run({"tests:command": F}, exit_code=1), base, base.failing).targets_left == ("tests:command",)
    assert compare(run({"tests:command": P}), base, base.failing).ok


def test_a_broken_run_is_not_a_result() -> None:
    verdict = compare(run({"t.py::ok": P, "t.py::spec": P, "t.py::legacy": P}, broken="timed out after 60s"),
                      BASE, BASE.failing)

    assert not verdict.ok and verdict.status == "broken"
    assert verdict.targets_left == ("t.py::legacy", "t.py::spec"), "nothing a broken run shows is met"
    assert fingerprint({"tests": verdict_run()}, {"tests": verdict}) is not None


def verdict_run() -> GateRun:
    return run({}, broken="timed out after 60s")


def test_vanished_baseline_passes_are_new_failures() -> None:
    verdict = compare(run({"t.py::spec": P, "t.py::legacy": P}), BASE, BASE.failing)

    assert verdict.vanished == ("t.py::ok",) and verdict.new_failures == ("t.py::ok",)


def test_the_worse_of_two_runs_wins_check_by_check() -> None:
    first = run({"a": F, "b": P, "c": P}, exit_code=1)
    second = run({"a": P, "b": E, "d": P}, exit_code=1)

    merged = {c.check_id: c.status for c in worst_of(first, second).checks}

    assert merged == {"a": F, "b": E, "c": P, "d": P}
