"""Flaky checks, differential gates and judge gates, through the real loop."""

from __future__ import annotations

import json
from pathlib import Path

from onloop.loop.api import start_run
from onloop.loop.stop import StopReason
from onloop.store import quarantine
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.testing import Edit, FakeModelServer, Scenario, Step, Turn
from tests.loop.helpers import receipts, workspace
from tests.loop.test_run_e2e import feature

FLAKY_TEST = """import os
import unittest


class F(unittest.TestCase):
    def test_flaky(self):
        # Fails the first time it ever runs in this worktree, passes afterwards: a flaky test.
        if not os.path.exists(".flaky-seen"):
            open(".flaky-seen", "w").close()
            self.fail("timing-dependent failure")
"""


def test_a_check_that_passes_on_an_immediate_rerun_is_flaky_and_quarantined(make_repo, tmp_path: Path) -> None:
    first = Step(**{**feature("one", "first").__dict__,
                    "edits": (*feature("one", "first").edits, Edit("tests/test_flaky.py", write=FLAKY_TEST))})
    repo = workspace(make_repo, tmp_path, Scenario((first, feature("two", "second"))),
                     files={".gitignore": "__pycache__/\n*.pyc\n.flaky-seen\n"})
    db = Database.open_default()

    outcome = start_run(repo, db=db)

    assert outcome.reason is StopReason.DONE
    one = receipts(db, outcome.run_id)[0]
    assert one["flaky"] == {"tests": ["tests.test_flaky.F.test_flaky"]}
    assert one["gates"]["tests"]["status"] == "pass" and one["delta"]["checks_fixed"] == []
    listed = quarantine.list_all(db, str(repo))
    assert [(q["gate"], q["check_id"], q["times"]) for q in listed] == [("tests", "tests.test_flaky.F.test_flaky", 1)]
    logs = Path(store.get_run(db, outcome.run_id).worktree).parent / "logs"
    assert (logs / "gate-tests-i001-rerun.log").exists()


REFERENCE = "import sys\nprint(sum(int(x) for x in open(sys.argv[1]).read().split()))\n"
CANDIDATE_BAD = "import sys\nprint(len(open(sys.argv[1]).read().split()))\n"
CANDIDATE_GOOD = "import sys\nnums = open(sys.argv[1]).read().split()\nprint(sum(map(int, nums)))\n"


def test_differential_gate_compares_a_port_with_its_reference(make_repo, tmp_path: Path) -> None:
    gate = ('[gates.port]\nkind = "differential"\nreference = ["python3", "ref.py", "{input}"]\n'
            'candidate = ["python3", "cand.py", "{input}"]\ninputs = ["cases/*.txt"]\n'
            'normalise = { strip_whitespace = true }\n')
    bad = Step(message="ported", plan_check=("first",), edits=(Edit("cand.py", write=CANDIDATE_BAD),))
    good = Step(message="fixed the port", plan_check=("second",),
                edits=(Edit("cand.py", write=CANDIDATE_GOOD),))
    repo = workspace(make_repo, tmp_path, Scenario((bad, good)), gates=gate,
                     files={"ref.py": REFERENCE, "cases/a.txt": "1 2 3\n", "cases/b.txt": "10 20\n"})
    db = Database.open_default()

    outcome = start_run(repo, db=db)

    assert outcome.reason is StopReason.DONE and outcome.iterations == 2
    baseline = store.load_baselines(db, outcome.run_id)["port"]
    assert {c[0]: c[1] for c in baseline["checks"]} == {"port:cases/a.txt": "failed", "port:cases/b.txt": "failed"}
    first, second = receipts(db, outcome.run_id)
    assert first["gates"]["port"]["preexisting"] == ["port:cases/a.txt", "port:cases/b.txt"]
    assert "-6" in first["feedback"] or "6" in first["feedback"], "the condensed diff reaches the agent"
    assert second["gates"]["port"]["fixed"] == ["port:cases/a.txt", "port:cases/b.txt"]


def test_judge_gate_runs_after_hard_gates_and_can_only_add_a_failure(make_repo, tmp_path: Path) -> None:
    verdict_fail = json.dumps({"pass": False, "reasons": ["mul has no docstring"]})
    verdict_pass = json.dumps({"pass": True, "reasons": ["documented"]})
    with FakeModelServer([Turn(text=verdict_fail), Turn(text=verdict_pass)]) as server:
        judge = (f'[gates.review]\nkind = "judge"\nrubric = "Every new function has a docstring."\n'
                 f'model = {{ provider = "openai", model = "fake-judge", base_url = "{server.openai_base_url}" }}\n')
        broken = feature("two", "first", passing=False)
        fix = Step(message="fixed", edits=(Edit("tests/test_two.py", replace=("(two(), 2)", "(two(), 1)")),))
        scenario = Scenario((broken, fix, feature("three", "second")))
        repo = workspace(make_repo, tmp_path, scenario, extra=judge)
        db = Database.open_default()

        outcome = start_run(repo, db=db)

        assert len([r for r in server.requests if r.wire == "chat"]) == 2
    assert outcome.reason is StopReason.DONE and outcome.iterations == 3
    first, second, third = receipts(db, outcome.run_id)
    assert "review" not in first["gates"], "the judge does not run while a hard gate fails"
    assert second["gates"]["review"]["new_failures"] == ["review:verdict"]
    assert "mul has no docstring" in second["feedback"]
    assert third["gates"]["review"]["status"] == "pass"


def test_quarantine_cli_lists_and_removes(make_repo, tmp_path: Path) -> None:
    from tests.loop.helpers import onloop_cli

    repo = make_repo({"a.txt": "x"})
    db = Database.open_default()
    quarantine.add(db, str(repo), "tests", ["t.test_x"], "2026-01-01T00:00:00")
    listed = onloop_cli("quarantine", "list")
    assert listed.returncode == 0 and "t.test_x" in listed.stdout
    assert onloop_cli("quarantine", "remove", "tests", "t.test_x", "-C", str(repo)).returncode == 0
    assert quarantine.quarantined(db, str(repo), "tests") == frozenset()
    again = onloop_cli("quarantine", "remove", "tests", "t.test_x", "-C", str(repo))
    assert again.returncode == 2 and "not in quarantine" in again.stderr
