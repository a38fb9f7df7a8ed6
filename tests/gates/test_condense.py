"""Condensing: every failing id kept, shared root causes collapsed, the token cap honoured, stable."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.condense import (
    condense,
    condense_file,
    condense_text,
    estimate_tokens,
    normalise,
    parse_failing_ids,
)
from onloop.gates.parsers import GateOutput, parse_gate_output

DATA = Path(__file__).resolve().parent.parent / "data" / "gates"
LONG_LOGS = {
    "pytest-vv-long-packaging-specifiers.log": 61,
    "pytest-vv-long-packaging-property-hypothesis.log": 14,
}
BUDGETS = [50, 200, 600, 1500, 4000]


def long_checks(name: str) -> list[CheckResult]:
    return parse_gate_output(GateOutput("tests", 1, False, (DATA / name).read_text()))


@pytest.mark.parametrize("name", sorted(LONG_LOGS))
@pytest.mark.parametrize("budget", BUDGETS)
def test_every_failing_id_is_kept(name: str, budget: int) -> None:
    checks = long_checks(name)
    expected = sorted(c.check_id for c in checks if c.status.failing)
    assert len(expected) == LONG_LOGS[name]
    result = condense(checks, token_budget=budget)
    assert list(result.failing_ids) == expected
    assert sorted(parse_failing_ids(result.text)) == expected  # 100% recoverable from the text alone
    if "~" not in result.text:
        assert all(check_id in result.text for check_id in expected)


@pytest.mark.parametrize("name", sorted(LONG_LOGS))
@pytest.mark.parametrize("budget", BUDGETS)
def test_token_cap_is_honoured_above_the_floor(name: str, budget: int) -> None:
    checks = long_checks(name)
    floor = condense(checks, token_budget=1)  # header, the most frequent cause and the ids: never cut
    result = condense(checks, token_budget=budget)
    assert result.tokens_estimate == estimate_tokens(result.text) == (len(result.text) + 3) // 4
    if budget >= floor.tokens_estimate + 40:
        assert result.tokens_estimate <= budget
        assert "exceeds the token budget" not in result.text
    else:
        assert "The id list alone exceeds the token budget" in result.text
    assert result.text.startswith(f"{LONG_LOGS[name]} failing checks")
    assert "1. [" in result.text  # the top cause survives any budget


def test_bigger_budget_shows_more_causes_and_cuts_are_announced() -> None:
    checks = long_checks("pytest-vv-long-packaging-specifiers.log")
    small, big = condense(checks, token_budget=900), condense(checks, token_budget=20_000)
    def shown(text: str) -> int:
        return text.count("\n   e.g. ") + text.count("\n   in ")

    assert shown(small.text) < shown(big.text)
    assert "causes cut by the token budget" in small.text
    assert "causes cut" not in big.text


def test_shared_root_cause_collapses_on_the_real_log() -> None:
    result = condense(long_checks("pytest-vv-long-packaging-specifiers.log"), token_budget=20_000)
    # Ten parametrised cases failing on `assert '1' in <Specifier('<2', ...)>` at one line: one cause.
    line = next(x for x in result.text.splitlines() if "tests/test_specifiers.py:547:" in x)
    assert "[10x]" in line
    assert result.text.count("tests/test_specifiers.py:547:") == 1
    header = result.text.splitlines()[0]
    assert header.startswith("61 failing checks (61 failed), ")
    assert int(header.split(", ")[1].split()[0]) < 30  # 61 failures, far fewer causes


def test_dedup_normalises_numbers_addresses_and_quoted_values() -> None:
    checks = [
        CheckResult(f"tests/test_x.py::test_case[{i}]", CheckStatus.FAILED,
                    f"ValueError: bad value '{i * 7}' for <Obj at 0x{i:08x}> after {i}.{i}s", "src/x.py:12")
        for i in range(200)
    ] + [CheckResult("tests/test_y.py::test_other", CheckStatus.FAILED, "KeyError: 'k'", "src/y.py:3")]
    result = condense(checks, token_budget=600)
    assert "[200x] at src/x.py:12: ValueError: bad value '0' for <Obj at 0x00000000> after 0.0s" in result.text
    assert "[1x] at src/y.py:3: KeyError: 'k'" in result.text
    assert result.text.splitlines()[0] == "201 failing checks (201 failed), 2 distinct causes."
    assert sorted(parse_failing_ids(result.text)) == sorted(c.check_id for c in checks)
    assert normalise("x 0x7fe45b49c6d0 'abc' 3.14 True") == "x <addr> '?' N ?"


def test_same_message_at_different_locations_stays_apart() -> None:
    checks = [CheckResult("a::t1", CheckStatus.FAILED, "assert False", "tests/a.py:3"),
              CheckResult("a::t2", CheckStatus.FAILED, "assert False", "tests/a.py:9")]
    assert condense(checks).text.count("[1x]") == 2


@pytest.mark.parametrize("name", sorted(LONG_LOGS))
def test_output_is_stable(name: str) -> None:
    checks = long_checks(name)
    first = condense(checks, token_budget=600)
    shuffled = list(checks)
    random.Random(7).shuffle(shuffled)
    assert condense(shuffled, token_budget=600) == first
    assert condense(list(reversed(checks)), token_budget=600).text == first.text


@pytest.mark.parametrize("name", sorted(LONG_LOGS))
def test_condense_text_fast_path_agrees_with_full_parse(name: str) -> None:
    text = (DATA / name).read_text()
    fast = condense_text(text, token_budget=600)
    full = condense(parse_gate_output(GateOutput("condense", 1, False, text)), token_budget=600)
    assert fast.failing_ids == full.failing_ids
    assert fast.text == full.text
    assert len(text) / len(fast.text) > 25


def test_passing_checks_only() -> None:
    result = condense([CheckResult("a", CheckStatus.PASSED), CheckResult("b", CheckStatus.SKIPPED)])
    assert result.failing_ids == ()
    assert result.text == "No failing checks (2 checks passed or skipped)."


def test_raw_output_lines_are_used_when_checks_carry_no_message() -> None:
    checks = [CheckResult("build:command", CheckStatus.FAILED)]
    raw = "compiling\nerror: linker `cc` not found\nerror: linker `cc` not found\nnote: see docs\n"
    result = condense(checks, raw_output=raw)
    assert result.text.count("linker `cc` not found") == 1
    assert "build:command" in result.text


def test_condense_text_on_unparsed_logs_uses_error_lines() -> None:
    assert condense_text("all good\nnothing to see\n").failing_ids == ()
    failed = condense_text("step 1\nFATAL: out of disk space\n")
    assert failed.failing_ids == ("condense:command",)
    assert "FATAL: out of disk space" in failed.text


ID_TEXT = st.text(st.characters(blacklist_characters="\n\r", blacklist_categories=["Cs"]), min_size=1,
                  max_size=40).filter(lambda s: not s[0].isspace())


@settings(max_examples=150, deadline=None)
@given(ids=st.lists(ID_TEXT, min_size=1, max_size=60, unique=True), budget=st.integers(1, 800))
def test_ids_round_trip_in_any_form(ids: list[str], budget: int) -> None:
    checks = [CheckResult(i, CheckStatus.FAILED, "boom") for i in ids]
    result = condense(checks, token_budget=budget)
    assert sorted(parse_failing_ids(result.text)) == sorted(ids)


@pytest.mark.parametrize("name", sorted(LONG_LOGS))
def test_condense_file_reads_only_the_tail_and_agrees(name: str) -> None:
    path = DATA / name
    assert condense_file(path) == condense_text(path.read_text())


def test_condense_file_on_a_big_generated_log(tmp_path: Path) -> None:
    lines = ["============================= test session starts =============================="]
    lines += [f"tests/test_big.py::test_ok[{i}] PASSED{' ' * 30}[ 50%]" for i in range(30_000)]
    lines += ["tests/test_big.py::test_bad[7] FAILED", "=" * 30 + " FAILURES " + "=" * 30,
              "_" * 20 + " test_bad[7] " + "_" * 20, "E       assert 7 == 8", "tests/test_big.py:3: AssertionError",
              "=" * 20 + " short test summary info " + "=" * 20,
              "FAILED tests/test_big.py::test_bad[7] - assert 7 == 8",
              "=" * 10 + " 1 failed, 30000 passed in 9.99s " + "=" * 10]
    path = tmp_path / "big.log"
    path.write_text("\n".join(lines) + "\n")
    result = condense_file(path)
    assert result.failing_ids == ("tests/test_big.py::test_bad[7]",)
    assert "at tests/test_big.py:3: assert 7 == 8" in result.text
    assert result == condense_text(path.read_text())
    assert path.stat().st_size / len(result.text) > 1000
