"""Parsers on real outputs of the tools people actually run: pytest-rerunfailures and pytest-repeat,
pytest 9's subtests and unittest's subTest, runs killed mid-way, `mypy --pretty` at several terminal
widths, and modules that do not even parse. The captures are in tests/data/gates/real (its README
says how each was made); the onloop pytest plugin's tests run real pytest on the same projects."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers import GateOutput, pytest_text, unittest_text
from onloop.gates.parsers.junit import JunitParser
from onloop.gates.parsers.mypy import MypyParser
from onloop.gates.parsers.pytest_text import PytestTextParser
from onloop.gates.parsers.unittest_text import UnittestParser
from onloop.gates.report import ENV_FD, PytestChannel, PytestReport

REAL = Path(__file__).resolve().parent.parent / "data" / "gates" / "real"
P, F, E, S = CheckStatus.PASSED, CheckStatus.FAILED, CheckStatus.ERROR, CheckStatus.SKIPPED


def read(name: str) -> str:
    return (REAL / name).read_text()


def pytest_checks(text: str) -> list[CheckResult]:
    return PytestTextParser().parse(GateOutput("g", 1, False, text))


def statuses(checks: list[CheckResult]) -> dict[str, CheckStatus]:
    ids = [c.check_id for c in checks]
    assert len(ids) == len(set(ids)), f"one check per id, never one per attempt: {ids}"
    return {c.check_id: c.status for c in checks}


def by_id(checks: list[CheckResult]) -> dict[str, CheckResult]:
    return {c.check_id: c for c in checks}


def junit_checks(name: str) -> list[CheckResult]:
    return JunitParser().parse(GateOutput("g", 1, False, "", report_path=REAL / name))


# -- pytest-rerunfailures and pytest-repeat ------------------------------------------------------

FLAKY = "tests/test_flaky.py::"
RERUN_STATUSES = {
    f"{FLAKY}test_always_fails": F, f"{FLAKY}test_flaky_then_passes": P, f"{FLAKY}test_passes": P,
    f"{FLAKY}test_param[1]": P, f"{FLAKY}test_param[2]": F, f"{FLAKY}test_param[a b]": P,
    f"{FLAKY}test_error_in_setup": E,
}


@pytest.mark.parametrize("name", ["rerun-v-rA.txt", "rerun-q-rAR.txt"])
def test_rerun_attempts_are_one_check_per_test_in_the_text(name: str) -> None:
    text = read(name)
    assert text.count("RERUN tests/test_flaky.py::test_always_fails") + text.count(
        "test_always_fails RERUN") == 2, "the capture shows the attempts"
    checks = pytest_checks(text)
    assert statuses(checks) == RERUN_STATUSES
    flaky = by_id(checks)[f"{FLAKY}test_flaky_then_passes"]
    assert flaky.message == "flaky: passed on attempt 2 after an earlier attempt failed (rerun)"
    always = by_id(checks)[f"{FLAKY}test_always_fails"]
    assert always.message == "assert 1 == 2"
    assert always.detail.endswith("failed on every attempt (3)")
    assert by_id(checks)[f"{FLAKY}test_passes"].message == ""  # never rerun: nothing to say


def test_rerun_attempts_are_one_check_per_test_in_junit() -> None:
    cases = [c.get("name") for c in ET.parse(REAL / "rerun-junit.xml").getroot().iter("testcase")]
    assert cases.count("test_always_fails") == 3, "pytest-rerunfailures writes one testcase per attempt"
    checks = junit_checks("rerun-junit.xml")
    assert statuses(checks) == {k.replace("tests/test_flaky.py::", "tests.test_flaky::"): v
                                for k, v in RERUN_STATUSES.items()}
    flaky = by_id(checks)["tests.test_flaky::test_flaky_then_passes"]
    assert flaky.message.startswith("flaky: passed on attempt 2")
    assert by_id(checks)["tests.test_flaky::test_param[2]"].location == "tests/test_flaky.py:29"


def test_surefire_style_rerun_elements_in_one_testcase() -> None:
    xml = (
        '<?xml version="1.0"?><testsuite name="s" tests="2">'
        '<testcase classname="a.B" name="flaky"><flakyFailure message="boom">x</flakyFailure></testcase>'
        '<testcase classname="a.B" name="broken"><failure message="still boom">x</failure>'
        '<rerunFailure message="boom">x</rerunFailure><rerunFailure message="boom">x</rerunFailure></testcase>'
        "</testsuite>"
    )
    checks = by_id(JunitParser().parse(GateOutput("g", 1, False, xml)))
    assert {k: c.status for k, c in checks.items()} == {"a.B::flaky": P, "a.B::broken": F}
    assert checks["a.B::flaky"].message == "flaky: passed on attempt 2 after an earlier attempt failed (rerun)"
    assert checks["a.B::broken"].detail.endswith("failed on every attempt (3)")


def test_a_teardown_error_after_a_failed_call_is_the_same_attempt_in_junit() -> None:
    """pytest writes two testcases for it (the call's failure, then the teardown's error): no rerun."""
    cases = [c.get("name") for c in ET.parse(REAL / "teardown-junit.xml").getroot().iter("testcase")]
    assert cases.count("test_fail_and_teardown") == 2
    checks = junit_checks("teardown-junit.xml")
    assert statuses(checks) == {"tests.test_teardown::test_fail_and_teardown": E,
                                "tests.test_teardown::test_pass_and_teardown": E, "tests.test_teardown::test_plain": P}
    assert not any("attempt" in c.message + c.detail for c in checks)


REPEAT = "tests/test_rep.py::"
REPEAT_STATUSES = {
    **{f"{REPEAT}test_second_run_fails[{n}-3]": P for n in (1, 2, 3)},
    **{f"{REPEAT}test_word[a-{n}-3]": P for n in (1, 2, 3)},
    **{f"{REPEAT}test_word[b c-{n}-3]": F for n in (1, 2, 3)},
}


def test_pytest_repeat_ids_stay_distinct_and_reruns_merge_within_each() -> None:
    checks = pytest_checks(read("repeat-v-rA.txt"))
    assert statuses(checks) == REPEAT_STATUSES
    assert by_id(checks)[f"{REPEAT}test_second_run_fails[2-3]"].message.startswith("flaky:")
    assert by_id(checks)[f"{REPEAT}test_second_run_fails[1-3]"].message == ""
    junit = junit_checks("repeat-junit.xml")
    assert statuses(junit) == {k.replace(REPEAT, "tests.test_rep::"): v for k, v in REPEAT_STATUSES.items()}
    assert by_id(junit)["tests.test_rep::test_second_run_fails[2-3]"].message.startswith("flaky:")


# -- subtests ------------------------------------------------------------------------------------

SUB = "tests/test_sub.py::"
SUBTEST_FAILING = {f"{SUB}test_one_subtest_fails", f"{SUB}test_subtest_fails_and_parent_fails",
                   f"{SUB}test_plain_fail", f"{SUB}TestCaseSub::test_unittest_subtests"}


@pytest.mark.parametrize("name", ["subtests-v-rA.txt", "subtests-q.txt", "subtests-q-tb-no.txt",
                                  "subtests-q-tb-line.txt", "subtests-xdist-v.txt"])
def test_a_failing_subtest_fails_its_parent(name: str) -> None:
    checks = by_id(pytest_checks(read(name)))
    failing = {i for i, c in checks.items() if c.status.failing}
    assert failing == SUBTEST_FAILING  # no made-up ids such as "test_x [check] (i=1)", no counts check
    assert all(checks[i].status is F for i in failing)
    assert re.fullmatch(r"1 subtest failed: \[check\] \(i='?1'?\) - AssertionError: i was 1",
                        checks[f"{SUB}test_one_subtest_fails"].message)
    # pytest itself says PASSED for a unittest test whose subTest failed.
    assert re.fullmatch(r"1 subtest failed: \(i='?2'?\) - AssertionError: 2 == 2",
                        checks[f"{SUB}TestCaseSub::test_unittest_subtests"].message)
    assert checks[f"{SUB}test_subtest_fails_and_parent_fails"].message == (
        "AssertionError: parent broke; 1 subtest failed: [inner] - AssertionError: inner broke")
    if "-v" in name:
        assert checks[f"{SUB}test_all_subtests_pass"].status is P
        assert checks[f"{SUB}TestCaseSub::test_unittest_ok"].status is P


def test_a_subtest_failure_pytest_hid_is_counted_not_swallowed() -> None:
    """`-v --tb=no -rN`: pytest prints a unittest subtest's failure nowhere, but counts it."""
    checks = by_id(pytest_checks(read("subtests-v-tb-no-rN.txt")))
    unidentified = checks.pop("g:unidentified_failures")
    assert unidentified.status is F
    assert unidentified.message.startswith("pytest reported 6 failed/errors but only 5 could be identified")
    assert {i for i, c in checks.items() if c.status.failing} == SUBTEST_FAILING - {
        f"{SUB}TestCaseSub::test_unittest_subtests"}


@pytest.mark.parametrize(("old", "new", "check_id", "message"), [
    ("6 failed, 4 passed, 8 subtests passed", "5 failed, 4 passed, 8 subtests passed", "g:counts",
     "summary says 5 failed, parser found 6"),
    ("6 failed, 4 passed, 8 subtests passed", "6 failed, 5 passed, 8 subtests passed", "g:counts",
     "summary says 5 passed, parser found 4"),
    ("6 failed, 4 passed, 8 subtests passed", "7 failed, 4 passed, 8 subtests passed", "g:unidentified_failures",
     "pytest reported 7 failed/errors but only 6 could be identified in the output (output cut?)"),
])
def test_counts_that_disagree_with_the_final_line_are_a_check(old: str, new: str, check_id: str,
                                                               message: str) -> None:
    text = read("subtests-v-rA.txt")
    assert old in text
    checks = by_id(pytest_checks(text.replace(old, new)))
    assert checks[check_id].message == message
    assert checks[check_id].status is (E if check_id == "g:counts" else F)
    assert not {"g:counts", "g:unidentified_failures"} & set(by_id(pytest_checks(text)))


def test_subtests_in_junit_fail_their_testcase() -> None:
    checks = by_id(junit_checks("subtests-junit.xml"))
    assert {i for i, c in checks.items() if c.status.failing} == {
        "tests.test_sub::test_one_subtest_fails", "tests.test_sub::test_subtest_fails_and_parent_fails",
        "tests.test_sub::test_plain_fail", "tests.test_sub.TestCaseSub::test_unittest_subtests"}


def test_a_skipped_or_rerun_subtest_does_not_change_its_parent() -> None:
    checks = pytest_checks(read("subtests-edge-rerun-v-rA.txt"))
    assert statuses(checks) == {"tests/test_edge.py::test_one_subtest_skipped": P,
                                "tests/test_edge.py::test_flaky_subtest": P,
                                "tests/test_edge.py::TestU::test_sub_skip": P}
    assert by_id(checks)["tests/test_edge.py::test_flaky_subtest"].message.startswith("flaky:")


def test_unittest_subtests_fail_their_test_and_are_listed() -> None:
    text = read("unittest-subtests-v.txt")
    checks = by_id(UnittestParser().parse(GateOutput("g", 1, False, text)))
    assert {k: c.status for k, c in checks.items()} == {
        "test_ut.Numbers.test_even": F, "test_ut.Numbers.test_named": E,
        "test_ut.Numbers.test_plain": P, "test_ut.Numbers.test_sub_ok": P}
    assert checks["test_ut.Numbers.test_even"].message == "2 subtests failed: (i=1), (i=3) - AssertionError: 1 != 0"
    assert checks["test_ut.Numbers.test_even"].location.endswith("test_ut.py:8")
    assert checks["test_ut.Numbers.test_named"].message == (
        "2 subtests failed: [second], [first case] (n=1) - ValueError: boom")
    miscounted = UnittestParser().parse(GateOutput("g", 1, False, text.replace("failures=3", "failures=4")))
    assert [(c.check_id, c.status, c.message) for c in miscounted if c.check_id == "g:counts"] == [
        ("g:counts", E, "summary says 4 failures, parser found 3")]


# -- killed runs and cut outputs -----------------------------------------------------------------

PYTEST_CAPTURES = ["rerun-v-rA.txt", "rerun-q-rAR.txt", "repeat-v-rA.txt", "subtests-v-rA.txt", "subtests-q.txt",
                   "subtests-q-tb-no.txt", "subtests-q-tb-line.txt", "subtests-v-tb-no-rN.txt",
                   "subtests-xdist-v.txt", "subtests-edge-rerun-v-rA.txt", "syntax-q.txt", "syntax-rA.txt"]


@pytest.mark.parametrize("name", PYTEST_CAPTURES)
def test_whole_pytest_outputs_are_complete(name: str) -> None:
    assert pytest_text.incomplete_reason(read(name)) is None


def test_a_killed_pytest_run_is_incomplete_and_its_cut_line_gives_no_id() -> None:
    text = read("killed-pytest-v.txt")
    assert text.endswith("tests/test_slow.py::test_hangs "), "killed while the test ran"
    reason = pytest_text.incomplete_reason(text)
    assert reason is not None and reason.startswith("no final summary line")
    assert statuses(pytest_checks(text)) == {
        "tests/test_slow.py::test_quick": P, "tests/test_slow.py::test_fails[1]": P,
        "tests/test_slow.py::test_fails[2]": F}


def test_a_killed_unittest_run_is_incomplete() -> None:
    text = read("killed-unittest-v.txt")
    reason = unittest_text.incomplete_reason(text)
    assert reason is not None and reason.startswith("no final 'Ran N tests'")
    checks = UnittestParser().parse(GateOutput("g", 1, False, text))
    assert statuses(checks) == {"test_unit_slow.Slow.test_a_quick": P, "test_unit_slow.Slow.test_b_fails": F}
    for name in ("unittest-subtests-v.txt", "syntax-unittest-v.txt"):
        assert unittest_text.incomplete_reason(read(name)) is None


def test_a_cut_mid_line_never_yields_a_prefix_of_an_id() -> None:
    text = read("rerun-v-rA.txt")
    line = "FAILED tests/test_flaky.py::test_param[2] - assert 2 != 2\n"
    cut = text.index(line) + len("FAILED tests/test_flaky.py::test_param")
    assert set(statuses(pytest_checks(text[:cut]))) <= set(RERUN_STATUSES)
    assert "tests/test_flaky.py::test_param" not in statuses(pytest_checks(text[:cut]))


CUT_CAPTURES = ["rerun-v-rA.txt", "rerun-q-rAR.txt", "repeat-v-rA.txt", "subtests-v-rA.txt", "subtests-q.txt",
                "syntax-rA.txt", "../pytest-rA.txt"]  # the last: the demo project's (a setup error in conftest.py)


def _ids(text: str) -> set[str]:
    return {c.check_id for c in pytest_checks(text) if not c.check_id.startswith("g:")}


@pytest.mark.parametrize("name", CUT_CAPTURES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_cut_of_a_real_output_finds_only_full_ids(name: str, data: st.DataObject) -> None:
    text = read(name)
    whole = _ids(text)
    assert whole, "the uncut output has ids"
    cut = data.draw(st.integers(min_value=0, max_value=len(text)), label="cut")
    found = _ids(text[:cut])
    assert found <= whole, f"ids not in the uncut output: {found - whole}"
    final_line = text.rstrip("\n").rfind("\n") + 1
    if cut <= final_line:
        assert pytest_text.incomplete_reason(text[:cut]) is not None


@settings(max_examples=150, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(read("unittest-subtests-v.txt"))))
def test_any_cut_of_a_real_unittest_output_finds_only_full_ids(cut: int) -> None:
    text = read("unittest-subtests-v.txt")
    whole = {c.check_id for c in UnittestParser().parse(GateOutput("g", 1, False, text))}
    found = {c.check_id for c in UnittestParser().parse(GateOutput("g", 1, False, text[:cut]))}
    assert found - {"g:counts"} <= whole
    if cut < text.index("Ran 4 tests"):
        assert unittest_text.incomplete_reason(text[:cut]) is not None


# -- mypy --pretty -------------------------------------------------------------------------------

MYPY_IDS = {
    "mypy:return-value:pkg/shapes.py:float#0", "mypy:arg-type:pkg/shapes.py:area_of_many_rectangles_with_a_long_name#0",
    "mypy:assignment:pkg/shapes.py:str#0", "mypy:attr-defined:pkg/shapes.py:Rectangle#0",
    "mypy:arg-type:pkg/shapes.py:Rectangle#0", "mypy:arg-type:pkg/shapes.py:Rectangle#1",
    "mypy:name-defined:pkg/shapes.py:undefined_name_with_quite_a_long_identifier_so_the_message_w#0",
}


def mypy_messages(name: str) -> dict[str, str]:
    return {c.check_id: c.message for c in MypyParser().parse(GateOutput("g", 1, False, read(name)))}


@pytest.mark.parametrize(("name", "wrapped_line"), [
    ("mypy-pretty-width60.txt", "[assignment]"),
    ("mypy-pretty-columns100.txt", "[return-value]"),
    ("mypy-pretty-width45-context.txt", " [arg-type]"),  # the wrap fell on the empty word before the code
])
def test_mypy_pretty_at_any_width_gives_the_ids_of_the_plain_output(name: str, wrapped_line: str) -> None:
    assert wrapped_line in read(name).splitlines(), "the capture really wraps messages"
    plain = mypy_messages("mypy-no-pretty.txt")
    assert set(plain) == MYPY_IDS
    assert mypy_messages(name) == plain  # same ids, same error codes, same messages


# -- SyntaxError at collection -------------------------------------------------------------------

SYNTAX = {
    "tests/test_bad.py": ("SyntaxError: invalid syntax", "tests/test_bad.py:4"),
    "tests/test_imports_bad.py": ("SyntaxError: '(' was never closed", "tests/helper_bad.py:1"),
    "tests/test_indent.py": ("IndentationError: unexpected indent", "tests/test_indent.py:3"),
}


@pytest.mark.parametrize("name", ["syntax-q.txt", "syntax-rA.txt"])
def test_a_syntax_error_is_located_in_the_file_that_has_it(name: str) -> None:
    text = read(name)
    assert "ast.py:50: in parse" in text, "pytest's own frame points into the interpreter"
    checks = by_id(pytest_checks(text))
    # pytest stops after collection errors: tests/test_good.py::test_ok never ran.
    assert {i: (c.status, c.message, c.location) for i, c in checks.items()} == {
        i: (E, message, location) for i, (message, location) in SYNTAX.items()}


def test_a_syntax_error_in_junit_is_located_in_the_file_that_has_it() -> None:
    checks = by_id(junit_checks("syntax-junit.xml"))
    assert (checks["tests.test_bad"].message, checks["tests.test_bad"].location) == SYNTAX["tests/test_bad.py"]
    assert checks["tests.test_indent"].location == "tests/test_indent.py:3"
    assert checks["tests.test_imports_bad"].location.endswith("tests/helper_bad.py:1")


# -- onloop's pytest plugin on the same projects (real pytest runs) ------------------------------

PROJECT_SUBTESTS = """\
import os
import unittest

import pytest

STATE = os.path.join(os.path.dirname(__file__), ".state")


def test_one_subtest_fails(subtests):
    for i in range(3):
        with subtests.test(msg="check", i=i):
            assert i != 1, f"i was {i}"


def test_subtest_fails_and_parent_fails(subtests):
    with subtests.test(msg="inner"):
        assert False, "inner broke"
    assert 0, "parent broke"


def test_one_subtest_skipped(subtests):
    with subtests.test(msg="skipme"):
        pytest.skip("not here")
    with subtests.test(msg="fine"):
        pass


def test_flaky_subtest(subtests):
    n = int(open(STATE).read()) if os.path.exists(STATE) else 0
    open(STATE, "w").write(str(n + 1))
    with subtests.test(msg="flaky"):
        assert n >= 1


class TestCaseSub(unittest.TestCase):
    def test_unittest_subtests(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertNotEqual(i, 2)
"""
PROJECT_RERUN = """\
import os

STATE = os.path.join(os.path.dirname(__file__), ".state")


def test_always_fails():
    assert 1 == 2


def test_flaky_then_passes():
    n = int(open(STATE).read()) if os.path.exists(STATE) else 0
    open(STATE, "w").write(str(n + 1))
    assert n >= 1, "first attempt fails"
"""


def run_through_channel(project: Path, *args: str) -> tuple[PytestReport, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k not in (ENV_FD, "PYTHONPATH")}
    with PytestChannel() as channel:
        command = channel.wrap_argv([str(Path(sys.executable).parent / "pytest"), "-q", "-p", "no:cacheprovider",
                                     *args])
        assert command is not None
        channel.start()
        proc = subprocess.Popen(command, cwd=project, env={**env, **channel.env(None)}, pass_fds=(channel.child_fd,),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        channel.after_spawn()
        proc.communicate(timeout=180)
        return channel.finish(proc.returncode), proc.returncode


def project(root: Path, files: dict[str, str]) -> Path:
    for rel, content in {"pytest.ini": "[pytest]\n", "tests/__init__.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    return root


@pytest.mark.parametrize("args", [(), ("--reruns", "1"), ("-n", "2", "--reruns", "1")])
def test_the_plugin_reports_subtests_through_their_parent(tmp_path: Path, args: tuple[str, ...]) -> None:
    report, exit_code = run_through_channel(project(tmp_path, {"tests/test_sub.py": PROJECT_SUBTESTS}), *args)
    assert report.broken is None and exit_code == 1
    checks = by_id(list(report.checks))
    rerun = "--reruns" in args
    assert {i: c.status for i, c in checks.items()} == {
        f"{SUB}test_one_subtest_fails": F, f"{SUB}test_subtest_fails_and_parent_fails": F,
        f"{SUB}test_one_subtest_skipped": P,  # a skipped subtest does not skip its test
        f"{SUB}test_flaky_subtest": P if rerun else F,  # its failed first attempt was superseded
        f"{SUB}TestCaseSub::test_unittest_subtests": F,  # pytest's own report of it says passed
    }
    assert re.fullmatch(r"1 subtest failed: \[check\] \(i='?1'?\) - AssertionError: i was 1",
                        checks[f"{SUB}test_one_subtest_fails"].message)
    assert checks[f"{SUB}test_one_subtest_fails"].location == "tests/test_sub.py:12"
    assert checks[f"{SUB}test_subtest_fails_and_parent_fails"].message == (
        "AssertionError: parent broke; 1 subtest failed: [inner] - AssertionError: inner broke")
    assert re.fullmatch(r"1 subtest failed: \(i='?2'?\) - AssertionError: 2 == 2",
                        checks[f"{SUB}TestCaseSub::test_unittest_subtests"].message)
    if rerun:
        assert checks[f"{SUB}test_flaky_subtest"].message.startswith("flaky: passed on attempt 2")


@pytest.mark.parametrize("args", [("--reruns", "2"), ("-n", "2", "--reruns", "2")])
def test_the_plugin_merges_rerun_attempts(tmp_path: Path, args: tuple[str, ...]) -> None:
    report, exit_code = run_through_channel(project(tmp_path, {"tests/test_flaky.py": PROJECT_RERUN}), *args)
    assert report.broken is None and exit_code == 1
    checks = report.checks
    assert statuses(list(checks)) == {f"{FLAKY}test_always_fails": F, f"{FLAKY}test_flaky_then_passes": P}
    assert by_id(list(checks))[f"{FLAKY}test_flaky_then_passes"].message == (
        "flaky: passed on attempt 2 after an earlier attempt failed (rerun)")
    assert by_id(list(checks))[f"{FLAKY}test_always_fails"].message == "assert 1 == 2"
    assert by_id(list(checks))[f"{FLAKY}test_always_fails"].detail.endswith("failed on every attempt (3)")


def test_the_plugin_locates_a_syntax_error_in_the_file_that_has_it(tmp_path: Path) -> None:
    files = {"tests/test_bad.py": "import pytest\n\n\ndef test_broken(:\n    pass\n",
             "tests/test_imports_bad.py": (
                 "from tests.helper_bad import thing\n\n\ndef test_uses():\n    assert thing\n"),
             "tests/helper_bad.py": "thing = (1,\n",
             "tests/test_indent.py": "def test_broken_indent():\n    x = 1\n      y = 2\n",
             "tests/test_good.py": "def test_ok():\n    pass\n"}
    report, exit_code = run_through_channel(project(tmp_path, files))
    assert report.broken is None and exit_code == 2
    errors = {c.check_id: (c.message, c.location) for c in report.checks if c.status is E}
    assert errors == SYNTAX


# A failing test that, from a fixture's teardown (after pytest made its real failure report), forges a
# finished rerun through pytest's own hooks: a "rerun" report for its attempt, a new attempt started,
# and passing reports for it. Written against pytest's public hooks, not against onloop.
FORGED_RERUN = """\
import pytest
from _pytest.reports import TestReport


@pytest.fixture
def forge(request):
    yield
    item = request.node
    hook = item.ihook
    def report(when, outcome):
        return TestReport(item.nodeid, item.location, {}, outcome, None, when)
    hook.pytest_runtest_logreport(report=report("call", "rerun"))
    hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for when in ("setup", "call", "teardown"):
        hook.pytest_runtest_logreport(report=report(when, "passed"))
    item.execution_count = getattr(item, "execution_count", 1) + 1


def test_fails_then_forges_a_rerun(forge):
    assert 1 == 2
"""


@pytest.mark.parametrize("args", [(), ("--reruns", "1")])
def test_a_rerun_forged_through_pytests_hooks_does_not_supersede_a_real_failure(tmp_path: Path,
                                                                                  args: tuple[str, ...]) -> None:
    report, exit_code = run_through_channel(project(tmp_path, {"tests/test_forge.py": FORGED_RERUN}), *args)

    assert exit_code == 1
    assert statuses(list(report.checks)) == {"tests/test_forge.py::test_fails_then_forges_a_rerun": F}
