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

# A check whose outcome follows a script of its own, one entry per run, through a counter on the host:
# real flakiness, with the sequence under the test's control. Sandbox off for these (the gate must
# reach the counter); what is tested is the evidence rule, not the sandbox.
FLAKY_TEST = """import os
import unittest

COUNTER = {counter!r}
SCRIPT = {script!r}


class F(unittest.TestCase):
    def test_flaky(self):
        runs = 0
        if os.path.exists(COUNTER):
            with open(COUNTER) as handle:
                runs = int(handle.read())
        with open(COUNTER, "w") as handle:
            handle.write(str(runs + 1))
        if runs < len(SCRIPT) and SCRIPT[runs] == "fail":
            self.fail("timing-dependent failure")
"""
FLAKY_ID = "tests.test_flaky.F.test_flaky"


def _flaky_repo(make_repo, tmp_path: Path, script: list[str]) -> Path:
    test = FLAKY_TEST.format(counter=str(tmp_path / "runs.count"), script=script)
    return workspace(make_repo, tmp_path, Scenario((feature("one", "first"), feature("two", "second"))),
                     files={"tests/test_flaky.py": test}, extra='[policy]\nsandbox = "none"\n')


def test_a_check_that_flips_on_the_candidate_and_on_the_base_is_flaky_for_this_run(make_repo, tmp_path: Path) -> None:
    # runs: baseline pass, candidate fail, identical re-run pass, re-run on the base fail (a flip there too)
    repo = _flaky_repo(make_repo, tmp_path, ["pass", "fail", "pass", "fail"])
    db = Database.open_default()

    outcome = start_run(repo, db=db)

    assert outcome.reason is StopReason.DONE
    one = receipts(db, outcome.run_id)[0]
    assert one["flaky"] == {"tests": [FLAKY_ID]}
    assert one["gates"]["tests"]["status"] == "pass" and one["delta"]["checks_fixed"] == []
    listed = quarantine.list_all(db, str(repo))
    assert [(q["gate"], q["check_id"], q["scope"]) for q in listed] == [("tests", FLAKY_ID, outcome.run_id)]
    assert quarantine.quarantined(db, str(repo), "tests") == frozenset(), "not workspace-wide until confirmed"
    logs = Path(store.get_run(db, outcome.run_id).worktree).parent / "logs"
    assert (logs / "gate-tests-base-rerun-1.log").exists()


def test_a_flip_the_base_does_not_show_is_a_failure_not_flakiness(make_repo, tmp_path: Path) -> None:
    # runs: baseline pass, candidate fail, re-run pass, base re-run pass: only the candidate flips
    repo = _flaky_repo(make_repo, tmp_path, ["pass", "fail", "pass", "pass"])
    db = Database.open_default()

    outcome = start_run(repo, db=db, max_iterations=1)

    one = receipts(db, outcome.run_id)[0]
    assert one["flaky"] == {}
    assert one["gates"]["tests"]["new_failures"] == [FLAKY_ID], "failed in one of two identical runs: failing"
    assert quarantine.list_all(db, str(repo)) == []


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
    assert first["gates"]["port"]["targets_left"] == ["port:cases/a.txt", "port:cases/b.txt"]
    assert "target(s) still failing" in " ".join(first["done_blockers"])
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


def test_quarantine_cli_lists_confirms_and_removes(make_repo, tmp_path: Path) -> None:
    from tests.loop.helpers import onloop_cli

    repo = make_repo({"a.txt": "x"})
    db = Database.open_default()
    quarantine.add(db, str(repo), "tests", ["t.test_x"], "2026-01-01T00:00:00", run_id="run-1")
    listed = onloop_cli("quarantine", "list")
    assert listed.returncode == 0 and "t.test_x" in listed.stdout and "run run-1" in listed.stdout
    assert quarantine.quarantined(db, str(repo), "tests", "run-1") == {"t.test_x"}
    assert quarantine.quarantined(db, str(repo), "tests", "run-2") == frozenset()
    assert onloop_cli("quarantine", "confirm", "tests", "t.test_x", "-C", str(repo)).returncode == 0
    assert quarantine.quarantined(db, str(repo), "tests", "run-2") == {"t.test_x"}
    assert onloop_cli("quarantine", "confirm", "tests", "t.nope", "-C", str(repo)).returncode == 2
    assert onloop_cli("quarantine", "remove", "tests", "t.test_x", "-C", str(repo)).returncode == 0
    assert quarantine.quarantined(db, str(repo), "tests") == frozenset()
    again = onloop_cli("quarantine", "remove", "tests", "t.test_x", "-C", str(repo))
    assert again.returncode == 2 and "not in quarantine" in again.stderr
