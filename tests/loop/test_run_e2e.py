"""End-to-end runs of the real loop: real git, real SQLite, real subprocesses, the real sandbox.

Only the model is scripted (the scripted agent speaking Claude Code's stream-json). Every stop reason of
the contract is reached here at least once, with its exit code and its evidence in the store.
"""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from onloop.loop.api import start_run
from onloop.loop.stop import StopReason
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.testing import Edit, Scenario, Step
from tests.loop.helpers import receipts, tree_digest, workspace


def feature(name: str, item: str, *, passing: bool = True, claim: bool = False, cost: str = "0.01") -> Step:
    expected = 1 if passing else 2
    test = (f"import unittest\n\nfrom calc import {name}\n\n\nclass T(unittest.TestCase):\n"
            f"    def test_{name}(self):\n        self.assertEqual({name}(), {expected})\n")
    return Step(message=f"did {item}", plan_check=(item,), claim_done=claim, cost_usd=cost,
                edits=(Edit("calc.py", append=f"\n\ndef {name}():\n    return 1\n"),
                       Edit(f"tests/test_{name}.py", write=test)))


def idle(claim: bool = False) -> Step:
    return Step(message="nothing to do", claim_done=claim)


@pytest.fixture
def db() -> Database:
    return Database.open_default()


def test_verified_done_leaves_operator_checkout_untouched(make_repo, tmp_path: Path, db: Database) -> None:
    repo = workspace(make_repo, tmp_path, Scenario((feature("one", "first"), feature("two", "second", claim=True))))
    before = tree_digest(repo)
    head_before = subprocess.run(["git", "rev-parse", "main"], cwd=repo, capture_output=True, text=True).stdout

    outcome = start_run(repo, db=db)

    assert outcome.reason is StopReason.DONE and outcome.exit_code == 0
    assert outcome.iterations == 2
    row = store.get_run(db, outcome.run_id)
    assert row.branch == f"onloop/{outcome.run_id}" and row.spend_usd == Decimal("0.02")
    assert tree_digest(repo) == before, "the operator's checkout must be byte-for-byte unchanged"
    assert subprocess.run(["git", "rev-parse", "main"], cwd=repo, capture_output=True, text=True).stdout == head_before
    log = subprocess.run(["git", "log", "--format=%s", row.branch], cwd=repo, capture_output=True, text=True).stdout
    assert log.splitlines()[:2] == ["onloop: iteration 2: second", "onloop: iteration 1: first"]
    tags = subprocess.run(["git", "tag", "--list", f"onloop/{outcome.run_id}/*"], cwd=repo, capture_output=True,
                          text=True).stdout.split()
    assert tags == [f"onloop/{outcome.run_id}/green/1", f"onloop/{outcome.run_id}/green/2"]
    first, second = receipts(db, outcome.run_id)
    assert first["gates"]["tests"]["status"] == "pass" and first["delta"]["plan_items_closed"] == ["first"]
    assert second["claimed_done"] is True and second["decision"] == "stop"
    assert Path(second["transcript"]).read_text().count('"type": "result"') == 1


def test_gate_failure_is_fed_back_then_fixed(make_repo, tmp_path: Path, db: Database) -> None:
    fix = Step(message="fixed", edits=(Edit("tests/test_two.py", replace=("(two(), 2)", "(two(), 1)")),))
    scenario = Scenario((feature("two", "first", passing=False), fix, feature("three", "second")))
    repo = workspace(make_repo, tmp_path, scenario)

    outcome = start_run(repo, db=db)

    assert outcome.reason is StopReason.DONE and outcome.iterations == 3
    first, second, _ = receipts(db, outcome.run_id)
    assert first["gates"]["tests"]["new_failures"] == ["tests.test_two.T.test_two"]
    assert first["tag"] is None and "tests.test_two.T.test_two" in first["feedback"]
    assert second["gates"]["tests"]["fixed"] == ["tests.test_two.T.test_two"]
    context = Path(second["context_path"]).read_text()
    assert "tests.test_two.T.test_two" in context, "the failure summary reaches the next iteration's context"


def test_false_completion_claim_is_refused_and_recorded(make_repo, tmp_path: Path, db: Database) -> None:
    scenario = Scenario((feature("one", "first", claim=True), feature("two", "second", claim=True)))
    repo = workspace(make_repo, tmp_path, scenario)

    outcome = start_run(repo, db=db)

    assert outcome.reason is StopReason.DONE and outcome.iterations == 2
    incidents = store.incidents(db, outcome.run_id)
    assert [(i["iteration"], i["kind"]) for i in incidents] == [(1, "false_done")]
    assert "1 open item" in incidents[0]["summary"]
    assert "claim was refused" in receipts(db, outcome.run_id)[0]["feedback"]


def test_claim_without_diff_is_false_done(make_repo, tmp_path: Path, db: Database) -> None:
    done_plan = Step(message="all done", claim_done=True,
                     edits=(Edit("IMPLEMENTATION_PLAN.md", write="# Plan\n\n- [x] first\n"),))
    repo = workspace(make_repo, tmp_path, Scenario((done_plan,), default=idle()), items=["first"],
                     run="no_progress_limit = 2")

    outcome = start_run(repo, db=db)

    assert outcome.reason is StopReason.NO_PROGRESS
    incident = store.incidents(db, outcome.run_id)[0]
    assert incident["kind"] == "false_done" and "no real diff" in incident["summary"]


def test_completion_on_last_allowed_iteration_counts_as_done(make_repo, tmp_path: Path, db: Database) -> None:
    scenario = Scenario((feature("one", "first"), feature("two", "second", claim=True)))
    repo = workspace(make_repo, tmp_path, scenario, run="")

    outcome = start_run(repo, db=db, max_iterations=2)

    assert outcome.reason is StopReason.DONE and outcome.iterations == 2


def test_max_iterations(make_repo, tmp_path: Path, db: Database) -> None:
    steps = tuple(Step(edits=(Edit("notes.txt", append=f"{i}\n"),)) for i in range(5))
    repo = workspace(make_repo, tmp_path, Scenario(steps))

    outcome = start_run(repo, db=db, max_iterations=3)

    assert (outcome.reason, outcome.exit_code, outcome.iterations) == (StopReason.MAX_ITERATIONS, 10, 3)
    assert store.get_run(db, outcome.run_id).stop_reason == "max_iterations"


def test_max_time(make_repo, tmp_path: Path, db: Database) -> None:
    steps = tuple(Step(delay=1.2, edits=(Edit("notes.txt", append=f"{i}\n"),)) for i in range(10))
    repo = workspace(make_repo, tmp_path, Scenario(steps))

    outcome = start_run(repo, db=db, max_time="2s")

    assert outcome.reason is StopReason.MAX_TIME and outcome.exit_code == 11
    assert 1 <= outcome.iterations <= 3


def test_budget_stops_after_the_call_that_crossed_it(make_repo, tmp_path: Path, db: Database) -> None:
    steps = tuple(Step(cost_usd="0.40", edits=(Edit("notes.txt", append=f"{i}\n"),)) for i in range(6))
    repo = workspace(make_repo, tmp_path, Scenario(steps))

    outcome = start_run(repo, db=db, budget_usd="1.00")

    assert outcome.reason is StopReason.BUDGET and outcome.exit_code == 12
    assert outcome.iterations == 3
    assert store.get_run(db, outcome.run_id).spend_usd == Decimal("1.20")


def test_token_cap_is_a_budget_stop(make_repo, tmp_path: Path, db: Database) -> None:
    steps = tuple(Step(usage={"input_tokens": 600, "output_tokens": 0}, edits=(Edit("n.txt", append="x"),))
                  for _ in range(5))
    repo = workspace(make_repo, tmp_path, Scenario(steps), run="max_tokens = 1000")

    outcome = start_run(repo, db=db)

    assert outcome.reason is StopReason.BUDGET and outcome.iterations == 2


def test_no_progress(make_repo, tmp_path: Path, db: Database) -> None:
    repo = workspace(make_repo, tmp_path, Scenario((), default=idle()))

    outcome = start_run(repo, db=db)

    assert (outcome.reason, outcome.exit_code, outcome.iterations) == (StopReason.NO_PROGRESS, 13, 3)


def test_stuck_on_the_same_failure(make_repo, tmp_path: Path, db: Database) -> None:
    broken = feature("two", "first", passing=False)
    churn = tuple(Step(edits=(Edit("notes.txt", append=f"attempt {i}\n"),)) for i in range(6))
    repo = workspace(make_repo, tmp_path, Scenario((broken, *churn)))

    outcome = start_run(repo, db=db)

    assert (outcome.reason, outcome.exit_code) == (StopReason.STUCK, 14)
    assert outcome.iterations == 3
    fingerprints = {r["fingerprint"] for r in receipts(db, outcome.run_id)}
    assert len(fingerprints) == 1 and None not in fingerprints


def test_agent_errors_roll_back_and_stop(make_repo, tmp_path: Path, db: Database) -> None:
    failing = Step(exit_code=1, is_error=True, message="API Error: something broke",
                   edits=(Edit("calc.py", append="\nBROKEN = True\n"),))
    repo = workspace(make_repo, tmp_path, Scenario((), default=failing))

    outcome = start_run(repo, db=db)

    assert (outcome.reason, outcome.exit_code, outcome.iterations) == (StopReason.AGENT_ERROR, 15, 3)
    row = store.get_run(db, outcome.run_id)
    assert "BROKEN" not in (Path(row.worktree) / "calc.py").read_text(), "failed work is rolled back"
    kept = subprocess.run(["git", "show", f"refs/onloop/{row.id}/rejected/1:calc.py"], cwd=row.worktree,
                          capture_output=True, text=True).stdout
    assert "BROKEN = True" in kept, "the rolled-back diff is kept under refs/onloop/<run>/rejected/<n>"


def test_agent_crash_mid_stream_is_rolled_back(make_repo, tmp_path: Path, db: Database) -> None:
    crash = Step(crash="kill", edits=(Edit("calc.py", append="\nPARTIAL = 1\n"),))
    repo = workspace(make_repo, tmp_path, Scenario((crash, feature("one", "first"), feature("two", "second"))))

    outcome = start_run(repo, db=db)

    assert outcome.reason is StopReason.DONE
    first = receipts(db, outcome.run_id)[0]
    assert first["agent_status"] == "crashed" and first["status"] == "rolled_back"
    assert Path(first["transcript"]).read_text().strip(), "the partial transcript is kept"


LEGACY = ("import unittest\n\n\nclass Legacy(unittest.TestCase):\n"
          "    def test_legacy(self):\n        self.assertEqual(1, 2)\n")
LEGACY_ID = "tests.test_legacy.Legacy.test_legacy"


def test_a_check_failing_at_baseline_is_a_target_that_blocks_done(make_repo, tmp_path: Path, db: Database) -> None:
    scenario = Scenario((feature("one", "first"), feature("two", "second", claim=True)))
    repo = workspace(make_repo, tmp_path, scenario, files={"tests/test_legacy.py": LEGACY})

    outcome = start_run(repo, db=db, max_iterations=3)

    assert outcome.reason is not StopReason.DONE
    baseline = store.load_baselines(db, outcome.run_id)["tests"]
    assert [LEGACY_ID, "failed"] in [c[:2] for c in baseline["checks"]]
    second = receipts(db, outcome.run_id)[1]
    assert second["gates"]["tests"]["targets_left"] == [LEGACY_ID]
    assert second["gates"]["tests"]["status"] == "fail (1 target(s) left)"
    assert any("target(s) still failing" in b for b in second["done_blockers"])
    assert "false_done" in {i["kind"] for i in store.incidents(db, outcome.run_id)}
    started = [e for e in store.events_after(db, outcome.run_id, 0) if e["kind"] == "baseline_gate"]
    assert "1 target(s) that must pass, 0 tolerated" in started[0]["message"]


def test_tolerated_baseline_failures_neither_block_nor_count(make_repo, tmp_path: Path, db: Database) -> None:
    scenario = Scenario((feature("one", "first"), feature("two", "second")))
    gates = ('[gates.tests]\ncommand = ["python3", "-m", "unittest", "-v"]\ntimeout = "60s"\nformat = "unittest"\n'
             'tolerate = ["tests.test_legacy.*"]\n')
    repo = workspace(make_repo, tmp_path, scenario, files={"tests/test_legacy.py": LEGACY}, gates=gates)

    outcome = start_run(repo, db=db)

    assert outcome.reason is StopReason.DONE
    first = receipts(db, outcome.run_id)[0]
    assert first["gates"]["tests"]["tolerated"] == [LEGACY_ID]
    assert first["gates"]["tests"]["targets_left"] == []
    assert first["gates"]["tests"]["status"] == "pass (tolerated failures)"
    assert first["delta"]["checks_fixed"] == []


def test_rate_limit_waits_and_retries_the_same_iteration(make_repo, tmp_path: Path, db: Database) -> None:
    limited = Step(rate_limit_attempts=1, rate_limit_reset_in=1, message="did first", plan_check=("first",),
                   edits=(Edit("calc.py", append="\n\ndef one():\n    return 1\n"),))
    repo = workspace(make_repo, tmp_path, Scenario((limited, feature("two", "second"))))

    outcome = start_run(repo, db=db)

    assert outcome.reason is StopReason.DONE and outcome.iterations == 2
    first = receipts(db, outcome.run_id)[0]
    assert first["attempts"] == 2 and first["agent_status"] == "ok"
    assert first["rate_limits"][0]["action"].startswith("waited")
    assert store.get_run(db, outcome.run_id).agent_error_streak == 0


def test_resume_after_a_stop_continues_counters(make_repo, tmp_path: Path, db: Database) -> None:
    from onloop.loop.api import resume_run

    scenario = Scenario((feature("one", "first", cost="0.10"), feature("two", "second", cost="0.10")))
    repo = workspace(make_repo, tmp_path, scenario)
    first = start_run(repo, db=db, max_iterations=1)
    assert first.reason is StopReason.MAX_ITERATIONS

    second = resume_run(first.run_id, db=db, max_iterations=5)

    assert second.run_id == first.run_id and second.reason is StopReason.DONE and second.iterations == 2
    row = store.get_run(db, first.run_id)
    assert row.spend_usd == Decimal("0.20") and row.iterations_done == 2
    assert [json.loads(e["data_json"] or "{}").get("reason") for e in store.events_after(db, row.id)
            if e["kind"] == "run_stopped"] == ["max_iterations", "done"]


def test_rate_limited_backend_fails_over_to_the_fallback(make_repo, tmp_path: Path, db: Database) -> None:
    always_limited = Step(rate_limit_attempts=99, rate_limit_reset_in=3600)
    primary = Scenario((), default=always_limited).write(tmp_path / "primary.json")
    fallback = Scenario((feature("one", "first"), feature("two", "second")))
    extra = f'[backends.primary]\nkind = "scripted"\nscenario = "{primary}"\n'
    repo = workspace(make_repo, tmp_path, fallback, extra=extra,
                     run='fallback_backend = "scripted"\nrate_limit_max_wait = "10s"')

    outcome = start_run(repo, db=db, backend="primary")

    assert outcome.reason is StopReason.DONE
    first = receipts(db, outcome.run_id)[0]
    assert first["backend"] == "scripted" and first["attempts"] == 2
    assert first["rate_limits"][0]["action"] == "switched to fallback scripted"


def test_rate_limit_beyond_the_caps_stops_instead_of_sleeping(make_repo, tmp_path: Path, db: Database) -> None:
    limited = Step(rate_limit_attempts=99, rate_limit_reset_in=7200)
    repo = workspace(make_repo, tmp_path, Scenario((), default=limited), run='rate_limit_max_wait = "60s"')

    outcome = start_run(repo, db=db, max_time="3h")

    assert outcome.reason is StopReason.MAX_TIME and "rate_limit_max_wait" in outcome.detail


def test_pytest_gate_reports_per_test_through_the_private_channel(make_repo, tmp_path: Path, db: Database) -> None:
    import sys

    # The junit file is asked for too: onloop's plugin is trusted over a file the code under test can write.
    gate = (f'[gates.tests]\ncommand = ["{sys.executable}", "-m", "pytest", "-q", "-p", "no:cacheprovider", '
            '"--junitxml={junit}", "tests"]\ntimeout = "120s"\n')
    fix = Step(message="fixed", edits=(Edit("tests/test_two.py", replace=("(two(), 2)", "(two(), 1)")),))
    scenario = Scenario((feature("two", "first", passing=False), fix, feature("three", "second")))
    repo = workspace(make_repo, tmp_path, scenario, gates=gate)

    outcome = start_run(repo, db=db)

    assert outcome.reason is StopReason.DONE
    first, second, _ = receipts(db, outcome.run_id)
    assert first["gates"]["tests"]["new_failures"] == ["tests/test_two.py::T::test_two"]
    assert first["gates"]["tests"]["checks_total"] == 2
    assert first["gates"]["tests"]["report"] == "onloop pytest plugin over a private socket"
    assert second["gates"]["tests"]["fixed"] == ["tests/test_two.py::T::test_two"]
    assert "assert 1 == 2" in first["feedback"] or "AssertionError" in first["feedback"]


def test_repeated_policy_breaches_stop_the_run_as_blocked(make_repo, tmp_path: Path, db: Database) -> None:
    breach = Step(message="tweaking CI", edits=(Edit(".github/workflows/ci.yml", write="on: push\n"),
                                                Edit("calc.py", append="\nY = 2\n")))
    repo = workspace(make_repo, tmp_path, Scenario((), default=breach))
    before = tree_digest(repo)

    outcome = start_run(repo, db=db)

    assert (outcome.reason, outcome.exit_code, outcome.iterations) == (StopReason.BLOCKED, 16, 3)
    kinds = {i["kind"] for i in store.incidents(db, outcome.run_id)}
    assert "protected_path" in kinds
    worktree = Path(store.get_run(db, outcome.run_id).worktree)
    assert not (worktree / ".github").exists() and "Y = 2" not in (worktree / "calc.py").read_text()
    first = receipts(db, outcome.run_id)[0]
    assert first["status"] == "rolled_back" and "guardrails" in first["feedback"]
    assert "guardrails" in Path(receipts(db, outcome.run_id)[1]["context_path"]).read_text()
    assert tree_digest(repo) == before


def test_sandbox_none_is_loud_and_recorded(make_repo, tmp_path: Path, db: Database) -> None:
    repo = workspace(make_repo, tmp_path, Scenario((feature("one", "first"), feature("two", "second"))),
                     extra='[policy]\nsandbox = "none"\n')

    outcome = start_run(repo, db=db)

    assert outcome.reason is StopReason.DONE
    warnings = [e for e in store.events_after(db, outcome.run_id) if e["kind"] == "warning"]
    assert warnings and "SANDBOX DISABLED" in warnings[0]["message"]
    assert {r["sandbox"] for r in receipts(db, outcome.run_id)} == {"none"}


def test_no_usable_sandbox_refuses_to_run(make_repo, tmp_path: Path, db: Database,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONLOOP_BWRAP", str(tmp_path / "no-such-bwrap"))
    repo = workspace(make_repo, tmp_path, Scenario((feature("one", "first"),)))

    outcome = start_run(repo, db=db)

    assert (outcome.reason, outcome.exit_code, outcome.iterations) == (StopReason.BLOCKED, 16, 0)
    assert "apt-get install bubblewrap" in outcome.detail
    assert not any(e["kind"] == "agent_system" for e in store.events_after(db, outcome.run_id))
