"""Parsers on real captured outputs (tests/data/gates, copied from the shared fixtures) and on samples
built from the tools' documented formats (tests/data/gates/samples)."""

from __future__ import annotations

from pathlib import Path

import pytest

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers import GateOutput, detect_format, parse_gate_output

DATA = Path(__file__).resolve().parent.parent / "data" / "gates"
SAMPLES = DATA / "samples"


def parse(name: str, fmt: str = "auto", exit_code: int = 1, root: Path = DATA) -> list[CheckResult]:
    return parse_gate_output(GateOutput("g", exit_code, False, (root / name).read_text()), fmt)


def failing(checks: list[CheckResult]) -> dict[str, CheckResult]:
    return {c.check_id: c for c in checks if c.status.failing}


DEMO_FAILING = {
    "tests/test_core.py::test_total_applies_discount", "tests/test_core.py::test_as_dict",
    "tests/test_core.py::test_average_of_empty_invoice", "tests/test_core.py::test_parse_qty[four-4]",
    "tests/test_core.py::test_prints_and_logs_then_fails", "tests/test_core.py::test_flaky_network_call",
    "tests/test_core.py::test_saves_to_database", "tests/test_more.py::test_export_creates_file",
}


@pytest.mark.parametrize("name", ["pytest-q.txt", "pytest-rA.txt"])
def test_pytest_text_demo_run(name: str) -> None:
    checks = parse(name)
    assert detect_format(GateOutput("g", 1, False, (DATA / name).read_text())) == "pytest"
    found = failing(checks)
    assert set(found) == DEMO_FAILING
    assert found["tests/test_core.py::test_saves_to_database"].status is CheckStatus.ERROR
    assert found["tests/test_more.py::test_export_creates_file"].status is CheckStatus.ERROR
    zero = found["tests/test_core.py::test_average_of_empty_invoice"]
    assert zero.message == "ZeroDivisionError: division by zero"
    assert zero.location == "src/invoicing/core.py:38"  # the deepest frame, not the test line
    # -q truncates summary messages with "..."; the E line of the section is complete.
    assert found["tests/test_core.py::test_parse_qty[four-4]"].message.endswith("base 10: 'four'")


def test_pytest_rA_also_yields_passed_and_skipped() -> None:
    checks = {c.check_id: c.status for c in parse("pytest-rA.txt")}
    assert checks["tests/test_core.py::test_parse_qty[ 7 -7]"] is CheckStatus.PASSED
    assert checks["tests/test_core.py::test_half_cent_rounding"] is CheckStatus.SKIPPED  # XFAIL
    assert checks["tests/test_core.py::test_currency_support_xpass"] is CheckStatus.PASSED  # XPASS
    # 8 PASSED lines + 1 XPASS, minus test_export_creates_file whose teardown error wins.
    assert sum(1 for s in checks.values() if s is CheckStatus.PASSED) == 8


@pytest.mark.parametrize(("name", "failed", "passed"), [
    ("pytest-vv-long-packaging-specifiers.log", 61, 4307),
    ("pytest-vv-long-packaging-property-hypothesis.log", 14, 413),
])
def test_pytest_long_logs_exact_counts(name: str, failed: int, passed: int) -> None:
    checks = parse(name)
    assert len(failing(checks)) == failed
    assert sum(1 for c in checks if c.status is CheckStatus.PASSED) == passed
    assert all(c.message and c.location for c in failing(checks).values())
    assert not any(c.check_id.endswith("unidentified_failures") for c in checks)


def test_pytest_cut_log_says_failures_are_unidentified() -> None:
    text = (DATA / "pytest-vv-long-packaging-specifiers.log").read_text()
    head, tail = text[:200_000], text[-300:]  # the gate kept the head and the final line only
    checks = parse_gate_output(GateOutput("tests", 1, False, head + "\n" + tail), "pytest")
    unidentified = [c for c in checks if c.check_id == "tests:unidentified_failures"]
    assert unidentified and unidentified[0].status is CheckStatus.FAILED
    assert "61" in unidentified[0].message


def test_junit_from_report_file_and_from_text(tmp_path: Path) -> None:
    report = DATA / "pytest-junit.xml"
    from_file = parse_gate_output(GateOutput("g", 1, False, "", report_path=report), "junit")
    from_text = parse("pytest-junit.xml", "auto")
    assert from_file == from_text
    found = failing(from_file)
    assert len(found) == 8
    zero = found["tests.test_core::test_average_of_empty_invoice"]
    assert zero.message == "ZeroDivisionError: division by zero"
    assert zero.location == "src/invoicing/core.py:38"
    # The message attribute holds the whole explanation; only its first line is the message.
    assert found["tests.test_core::test_total_applies_discount"].message == "AssertionError: assert 20.4 == 22.95"


RUFF_IDS = {
    "ruff:I001:billing/invoice.py:Import_block_is_un-sorted_or_un-formatted#0",
    "ruff:F401:billing/invoice.py:os#0", "ruff:UP045:billing/invoice.py:X_|_None#0",
    "ruff:F841:billing/invoice.py:result#0", "ruff:F541:billing/invoice.py:f-string_without_any_placeholders#0",
    "ruff:E722:billing/invoice.py:except#0", "ruff:F821:billing/invoice.py:undefined_name#0",
    "ruff:F841:billing/invoice.py:unused#0",
}


@pytest.mark.parametrize("name", ["ruff-check.txt", "ruff-check-concise.txt", "ruff-check.json"])
def test_ruff_three_formats_same_ids(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/srv") if Path("/srv").is_dir() else None
    # JSON filenames are absolute (/srv/capture/lint-demo/...); ids are relative to the working dir.
    lint_demo = Path("/srv/capture/lint-demo")
    monkeypatch.setattr("os.getcwd", lambda: str(lint_demo))
    checks = parse(name)
    assert detect_format(GateOutput("g", 1, False, (DATA / name).read_text())) == "ruff"
    assert set(failing(checks)) == RUFF_IDS
    f401 = failing(checks)["ruff:F401:billing/invoice.py:os#0"]
    assert f401.location == "billing/invoice.py:1:8"
    assert f401.message == "`os` imported but unused"


@pytest.mark.parametrize("name", ["mypy.txt", "mypy.jsonl"])
def test_mypy_text_and_json_same_ids(name: str) -> None:
    found = failing(parse(name))
    assert detect_format(GateOutput("g", 1, False, (DATA / name).read_text())) == "mypy"
    assert len(found) == 9
    # Two identical-looking union-attr errors on one line stay distinct through the occurrence index.
    assert {"mypy:union-attr:billing/invoice.py:None#0", "mypy:union-attr:billing/invoice.py:None#1"} <= set(found)
    assert found["mypy:name-defined:billing/invoice.py:undefined_name#0"].location.startswith("billing/invoice.py:39")


def test_mypy_json_and_text_agree_exactly() -> None:
    assert set(failing(parse("mypy.txt"))) == set(failing(parse("mypy.jsonl")))


@pytest.mark.parametrize("name", ["ruff-check-clean.txt", "mypy-clean.txt"])
def test_clean_runs_pass(name: str) -> None:
    checks = parse(name, exit_code=0)
    assert checks and not any(c.status.failing for c in checks)


def test_pyright_json() -> None:
    checks = parse("pyright.json", root=SAMPLES)
    found = failing(checks)
    assert set(found) == {
        "pyright:reportMissingImports:/work/proj/src/app/models.py:requets#0",
        "pyright:reportAttributeAccessIssue:/work/proj/src/app/models.py:nme#0",
        "pyright:reportArgumentType:/work/proj/src/app/views.py:str#0",
    }
    # 0-based line/character become 1-based; the multi-line message keeps its first line.
    assert found["pyright:reportAttributeAccessIssue:/work/proj/src/app/models.py:nme#0"].location.endswith(":41:16")
    warnings = [c for c in checks if not c.status.failing]
    assert [c.check_id for c in warnings] == ["pyright:reportUnusedVariable:/work/proj/src/app/views.py:tmp#0"]


def test_eslint_json() -> None:
    checks = parse("eslint.json", root=SAMPLES)
    found = failing(checks)
    assert set(found) == {
        "eslint:no-unused-vars:/work/proj/src/index.js:helper#0",
        "eslint:no-undef:/work/proj/src/index.js:proces#0",
        "eslint:parse-error:/work/proj/src/broken.js:Parsing_error:_Unexpected_token_)#0",
    }
    assert any(c.check_id.startswith("eslint:semi:") and not c.status.failing for c in checks)


@pytest.mark.parametrize(("name", "count"), [("tsc.txt", 4), ("tsc-pretty.txt", 2)])
def test_tsc_text(name: str, count: int) -> None:
    found = failing(parse(name, root=SAMPLES))
    assert len(found) == count
    assert found["tsc:TS2307:src/util/format.ts:left-padd#0"].location == "src/util/format.ts:3:24"


def test_go_test_json() -> None:
    checks = {c.check_id: c for c in parse("go-test.jsonl", root=SAMPLES)}
    assert checks["example.com/calc::TestAdd"].status is CheckStatus.PASSED
    assert checks["example.com/calc::TestSkipMe"].status is CheckStatus.SKIPPED
    sub = checks["example.com/calc::TestDivide/by_zero"]
    assert sub.status is CheckStatus.FAILED
    assert (sub.message, sub.location) == ("Divide(1, 0) = 0, want error", "calc_test.go:27")
    build = checks["example.com/calc/broken"]
    assert build.status is CheckStatus.FAILED and build.message == "undefined: fmt.Printn"
    # The package verdict of example.com/calc is explained by its tests: no extra check for it.
    assert "example.com/calc" not in checks


def test_generic_fallback_collects_error_lines() -> None:
    text = "building...\nerror: widget 12 broke\nerror: widget 13 broke\nwarning: meh\nFATAL: disk full\ndone\n"
    checks = parse_gate_output(GateOutput("build", 2, False, text))
    assert [c.check_id for c in checks] == ["build:command"]
    assert checks[0].message == "error: widget 12 broke"
    assert checks[0].detail.splitlines() == ["error: widget 12 broke", "FATAL: disk full"]  # deduplicated
    assert parse_gate_output(GateOutput("build", 0, False, text))[0].status is CheckStatus.PASSED


def test_pytest_progress_line_shapes() -> None:
    text = "\n".join([
        "============================= test session starts ==============================",
        "tests/a.py::test_one PASSED                                              [ 20%]",
        "tests/a.py::test_two[x y] SKIPPED (needs network)                        [ 40%]",
        "[gw1] [ 60%] PASSED tests/b.py::TestK::test_three ",
        "[gw0] [ 80%] FAILED tests/b.py::test_four ",
        "tests/c.py::test_five XFAIL (known bug)",
        "=================================== FAILURES ===================================",
        "__________________________________ test_four ___________________________________",
        "E       assert 1 == 2",
        "tests/b.py:9: AssertionError",
        "=========================== short test summary info ============================",
        "FAILED tests/b.py::test_four - assert 1 == 2",
        "=================== 1 failed, 2 passed, 1 skipped, 1 xfailed in 0.10s ====================",
    ])
    checks = {c.check_id: c for c in parse_gate_output(GateOutput("g", 1, False, text))}
    assert {k: v.status for k, v in checks.items()} == {
        "tests/a.py::test_one": CheckStatus.PASSED, "tests/a.py::test_two[x y]": CheckStatus.SKIPPED,
        "tests/b.py::TestK::test_three": CheckStatus.PASSED, "tests/b.py::test_four": CheckStatus.FAILED,
        "tests/c.py::test_five": CheckStatus.SKIPPED,
    }
    assert checks["tests/b.py::test_four"].location == "tests/b.py:9"


def test_absolute_paths_relative_to_a_gate_cwd_when_the_output_carries_one() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class OutputWithCwd(GateOutput):
        cwd: Path | None = None

    text = (SAMPLES / "eslint.json").read_text()
    checks = parse_gate_output(OutputWithCwd("lint", 1, False, text, None, Path("/work/proj")), "eslint")
    assert "eslint:no-undef:src/index.js:proces#0" in failing(checks)
