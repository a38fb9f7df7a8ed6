"""A text-parsed gate whose output is bigger than any cut: the parser reads all of it, so checks do not fall
in and out of view between runs (a cut once invented 89 regressions from a traceback 10 KB longer)."""

from __future__ import annotations

from pathlib import Path

from onloop.loop.api import start_run
from onloop.store.db import Database
from onloop.testing import Edit, Scenario, Step
from tests.loop.helpers import receipts, workspace

# A pytest -v style log: 120,000 progress lines, one failing test whose traceback is as long as
# `trace.txt` says, a second block of progress lines after it, and pytest's summary. About 5.5 MB.
GEN = """\
import sys
lines = int(open("trace.txt").read())
out = sys.stdout
for n in range(60000):
    out.write(f"tests/test_big.py::test_early_{n:05d} PASSED\\n")
out.write("tests/test_big.py::test_wanted FAILED\\n")
for n in range(60000):
    out.write(f"tests/test_big.py::test_late_{n:05d} PASSED\\n")
out.write("=" * 30 + " FAILURES " + "=" * 30 + "\\n" + "_" * 20 + " test_wanted " + "_" * 20 + "\\n")
for n in range(lines):
    out.write(f"    frame {n}: some deep call in a long traceback line of text\\n")
out.write("E   assert 1 == 2\\n")
out.write("=" * 20 + " short test summary info " + "=" * 20 + "\\n")
out.write("FAILED tests/test_big.py::test_wanted - assert 1 == 2\\n")
out.write("=" * 10 + " 1 failed, 120000 passed in 1.00s " + "=" * 10 + "\\n")
sys.exit(1)
"""


def test_every_check_of_a_huge_log_is_seen_on_both_runs(make_repo, tmp_path: Path) -> None:
    longer = Step(message="more context", claim_done=True, plan_check=("first", "second"),
                  edits=(Edit("trace.txt", write="200\n"), Edit("calc.py", append="\nX = 1\n")))
    gate = ('[gates.tests]\ncommand = ["python3", "gen.py"]\ntimeout = "120s"\nformat = "pytest"\n'
            'tolerate = ["tests/test_big.py::test_wanted"]\n')
    repo = workspace(make_repo, tmp_path, Scenario((longer,)), gates=gate,
                     files={"gen.py": GEN, "trace.txt": "20\n"})
    db = Database.open_default()

    outcome = start_run(repo, db=db, max_iterations=1)

    gate_receipt = receipts(db, outcome.run_id)[0]["gates"]["tests"]
    assert gate_receipt["new_failures"] == [], gate_receipt
    assert gate_receipt["checks_total"] == 120001, gate_receipt
    assert gate_receipt["tolerated"] == ["tests/test_big.py::test_wanted"], gate_receipt
    assert gate_receipt["vanished"] == [], gate_receipt
    assert outcome.reason.value == "done", outcome
