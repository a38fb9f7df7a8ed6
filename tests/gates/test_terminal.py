"""Coloured tool output: real captures made with the tools' colour switches forced (tests/data/gates/color,
see its README), the escape stripper on arbitrary text, and a coloured gate in the real loop."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onloop.gates.checks import CheckStatus
from onloop.gates.condense import condense_file
from onloop.gates.parsers import GateOutput, parse_gate_output
from onloop.gates.terminal import FORCING_ENV, plain_env, strip_escapes
from onloop.loop.api import start_run
from onloop.loop.stop import StopReason
from onloop.store.db import Database
from onloop.testing import Edit, Scenario, Step
from tests.loop.helpers import receipts, workspace

DATA = Path(__file__).parent.parent / "data" / "gates" / "color"
PYTEST_FAILING = [f"tests/test_calc.py::{name}" for name in ("test_error", "test_square[2]", "test_sub")]


def _failing(text: str, exit_code: int = 1) -> list[str]:
    return sorted(c.check_id for c in parse_gate_output(GateOutput("g", exit_code, False, text)) if c.status.failing)


@pytest.mark.parametrize("capture", ["pytest-color-rA.txt", "pytest-color-v.txt", "pytest-py-colors-q.txt"])
def test_coloured_pytest_output_gives_every_failing_id(capture: str) -> None:
    text = (DATA / capture).read_text()
    assert "\x1b[" in text, "the capture is coloured"
    assert _failing(text) == ["g:command"], "what a parser sees of coloured text unstripped: nothing"

    assert _failing(strip_escapes(text)) == PYTEST_FAILING


def test_coloured_pytest_passes_keep_their_ids() -> None:
    checks = parse_gate_output(GateOutput("g", 1, False, strip_escapes((DATA / "pytest-color-v.txt").read_text())))
    statuses = {c.check_id: c.status for c in checks}
    assert statuses["tests/test_calc.py::test_add"] is CheckStatus.PASSED
    assert statuses["tests/test_calc.py::test_skipped"] is CheckStatus.SKIPPED
    assert not any("\x1b" in c.message or "\x1b" in c.detail for c in checks)


def test_coloured_mypy_and_ruff_are_read() -> None:
    mypy = _failing(strip_escapes((DATA / "mypy-color.txt").read_text()))
    assert [i.split(":")[1] for i in mypy] == ["arg-type", "return-value"], mypy
    assert _failing(strip_escapes((DATA / "ruff-force-color.txt").read_text())) == ["ruff:F401:r.py:os#0"]


def test_condensing_a_coloured_log_file(tmp_path: Path) -> None:
    log = tmp_path / "ci.log"
    log.write_bytes((DATA / "pytest-color-rA.txt").read_bytes())

    condensed = condense_file(log)

    assert sorted(condensed.failing_ids) == PYTEST_FAILING
    assert "\x1b" not in condensed.text


_TEXT = st.text(st.characters(blacklist_characters="\x1b\x9b\x9d\x90\x98\x9e\x9f\x9c\x07"), max_size=80)
_SEQUENCES = st.one_of(
    st.from_regex(r"\x1b\[[0-9;?]{0,12}[ -/]?[@-~]", fullmatch=True),  # CSI: colours, cursor, erase
    st.from_regex(r"\x1b\][0-9]{1,3};[ -~]{0,30}(\x07|\x1b\\)", fullmatch=True),  # OSC: titles, links
    st.from_regex(r"\x1b[()][0-9A-B]", fullmatch=True),  # charset designation, as mypy writes it
    st.from_regex(r"\x9b[0-9;]{0,6}m", fullmatch=True),  # the 8-bit CSI
)


@given(st.lists(st.tuples(_TEXT, _SEQUENCES), max_size=12), _TEXT)
def test_stripping_removes_exactly_the_escapes(pieces: list[tuple[str, str]], tail: str) -> None:
    plain = "".join(text for text, _ in pieces) + tail
    coloured = "".join(text + escape for text, escape in pieces) + tail

    assert strip_escapes(coloured) == plain


def test_an_osc_hyperlink_keeps_its_text() -> None:
    link = "\x1b]8;;file:///src/calc.py\x1b\\src/calc.py\x1b]8;;\x1b\\:3: error"
    assert strip_escapes(link) == "src/calc.py:3: error"


def test_gates_are_asked_for_plain_text() -> None:
    env = plain_env({"FORCE_COLOR": "1", "CLICOLOR_FORCE": "1", "PY_COLORS": "1", "PATH": "/usr/bin"})

    assert not set(FORCING_ENV) & set(env)
    assert (env["NO_COLOR"], env["PY_COLORS"], env["TERM"], env["PATH"]) == ("1", "0", "dumb", "/usr/bin")


BASE_TESTS = ("from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
              "def test_wanted_later():\n    assert add(1, 1) == 3\n")


def test_a_regression_behind_a_coloured_failing_baseline_is_new(make_repo, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # A CI-style gate (a shell line, so read as text) whose pytest is forced to colour, and a CI that
    # forces colour in the environment too; one check fails at baseline and is tolerated.
    monkeypatch.setenv("FORCE_COLOR", "1")
    gate = (f'[gates.tests]\ncommand = ["sh", "-c", "{sys.executable} -m pytest -p no:cacheprovider --color=yes -rA '
            f'tests/test_new.py"]\ntimeout = "120s"\ntolerate = ["tests/test_new.py::test_wanted_later"]\n')
    breaks = Step(message="refactor add", claim_done=True, plan_check=("first", "second"),
                  edits=(Edit("calc.py", replace=("    return a + b", "    return a - b")),))
    repo = workspace(make_repo, tmp_path, Scenario((breaks,)), gates=gate,
                     files={"tests/test_new.py": BASE_TESTS}, extra='[policy]\nenv_allow = ["PATH", "FORCE_COLOR"]\n')
    db = Database.open_default()

    outcome = start_run(repo, db=db, max_iterations=1)

    assert outcome.reason is not StopReason.DONE
    gate_receipt = receipts(db, outcome.run_id)[0]["gates"]["tests"]
    assert gate_receipt["new_failures"] == ["tests/test_new.py::test_add"], gate_receipt
