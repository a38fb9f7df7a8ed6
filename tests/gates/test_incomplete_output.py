"""Output that is not a whole run's (killed, cut): marked incomplete, with the ids it did show; a gate whose
run was killed mid-way is broken, never "the tests it printed passed"."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from onloop.gates.checks import CheckStatus
from onloop.gates.condense import condense_text
from onloop.gates.parsers import GateOutput, parse_gate_output
from onloop.gates.terminal import strip_escapes
from onloop.loop.api import start_run
from onloop.loop.stop import StopReason
from onloop.store.db import Database
from onloop.testing import Edit, Scenario, Step
from tests.loop.helpers import receipts, workspace

WHOLE = strip_escapes((Path(__file__).parent.parent / "data" / "gates" / "color" / "pytest-color-v.txt").read_text())


def _statuses(text: str, exit_code: int | None) -> dict[str, CheckStatus]:
    return {c.check_id: c.status for c in parse_gate_output(GateOutput("g", exit_code, False, text))}


def test_a_whole_run_is_not_incomplete() -> None:
    assert "g:incomplete" not in _statuses(WHOLE, 1)


@pytest.mark.parametrize("cut", [0.3, 0.5, 0.8])
def test_a_cut_log_is_incomplete_and_keeps_what_it_saw(cut: int) -> None:
    text = WHOLE[: int(len(WHOLE) * cut)]
    statuses = _statuses(text, None)

    assert statuses["g:incomplete"] is CheckStatus.FAILED
    whole = _statuses(WHOLE, 1)
    assert all(whole.get(i) is s for i, s in statuses.items() if i.startswith("tests/")), "no invented id or status"


def test_a_passing_run_is_never_marked() -> None:
    # pytest -qq prints no final summary by design: a passing run must stay a pass.
    assert "g:incomplete" not in _statuses("....                                     [100%]\n", 0)


def test_condensing_a_cut_log_says_so() -> None:
    condensed = condense_text(WHOLE[: len(WHOLE) // 2])
    assert "g:incomplete" not in condensed.text and "condense:incomplete" in condensed.failing_ids
    assert "no final summary line" in condensed.text


KILLER = "import os\nimport signal\n\n\ndef add(a, b):\n    os.kill(os.getpid(), signal.SIGKILL)\n    return a + b\n"


def test_a_run_killed_mid_way_is_broken_not_passing(make_repo, tmp_path: Path) -> None:
    # A CI-style gate (a shell line, read as text): the code under test kills the test runner mid-run,
    # after pytest printed the tests before it as passed.
    tests = "".join(f"def test_{n:02d}():\n    assert True\n\n\n" for n in range(5))
    tests += "from calc import add\n\n\ndef test_zz_add():\n    assert add(2, 3) == 5\n"
    step = Step(message="faster add", claim_done=True, plan_check=("first", "second"),
                edits=(Edit("calc.py", write=KILLER),))
    gate = (f'[gates.tests]\ncommand = ["sh", "-c", "{sys.executable} -m pytest -p no:cacheprovider -v '
            f'tests/test_many.py; exit $?"]\ntimeout = "60s"\nformat = "pytest"\n')
    repo = workspace(make_repo, tmp_path, Scenario((step,)), gates=gate, files={"tests/test_many.py": tests})
    db = Database.open_default()

    outcome = start_run(repo, db=db, max_iterations=1)

    assert outcome.reason is not StopReason.DONE
    gate_receipt = receipts(db, outcome.run_id)[0]["gates"]["tests"]
    assert gate_receipt["status"] == "broken", gate_receipt
    assert "incomplete output" in gate_receipt["broken"], gate_receipt
