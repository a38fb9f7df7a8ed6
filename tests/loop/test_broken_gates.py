"""A gate that cannot give a result is broken, never one failing check: at baseline it stops the run
before iteration 1 with the gate's own error and a fix; in an iteration it blocks done."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from onloop.loop.api import start_run
from onloop.loop.stop import StopReason
from onloop.policy.visibility import VisibilityError
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.testing import Edit, Scenario, Step
from tests.loop.helpers import receipts, workspace

ONE_LINE = Scenario((Step(message="docs", plan_check=("first", "second"), claim_done=True,
                          edits=(Edit("README.md", write="better docs\n"),)),))
PYTEST = f'[gates.tests]\ncommand = ["{sys.executable}", "-m", "pytest", "-q", "tests"]\ntimeout = "120s"\n'


def _blocked_before_iteration_1(repo: Path, *words: str) -> str:
    db = Database.open_default()
    outcome = start_run(repo, db=db)
    assert (outcome.reason, outcome.exit_code, outcome.iterations) == (StopReason.BLOCKED, 16, 0), outcome
    row = store.get_run(db, outcome.run_id)
    assert (row.stop_reason, row.exit_code) == ("blocked", 16), "the stored stop agrees with the exit code"
    for word in words:
        assert word in outcome.detail, outcome.detail
    assert "Fix:" in outcome.detail
    return outcome.detail


def _hidden_script(tmp_path: Path) -> Path:
    # The operator's script under /tmp runs on the host, but the sandbox hides /tmp.
    script = tmp_path / "bin" / "run-tests"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\nexec python3 -m unittest\n")
    script.chmod(0o755)
    return script


def test_a_command_the_sandbox_hides_is_refused_before_a_run_exists(make_repo, tmp_path: Path) -> None:
    script = _hidden_script(tmp_path)
    repo = workspace(make_repo, tmp_path, ONE_LINE, gates=f'[gates.tests]\ncommand = ["{script}"]\ntimeout = "60s"\n')
    db = Database.open_default()

    with pytest.raises(VisibilityError) as refused:
        start_run(repo, db=db)

    text = str(refused.value)
    assert str(script) in text and "/tmp" in text and "readable = [" in text, text
    assert db.conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 0, "no run was created"


def test_a_program_the_gates_script_runs_hidden_is_broken_at_baseline(make_repo, tmp_path: Path) -> None:
    # Preflight sees the committed wrapper, not what it runs: the baseline shows it, with the fix.
    script = _hidden_script(tmp_path)
    gate = '[gates.tests]\ncommand = ["sh", "ci.sh"]\ntimeout = "60s"\n'
    repo = workspace(make_repo, tmp_path, ONE_LINE, gates=gate, files={"ci.sh": f"#!/bin/sh\nexec {script}\n"})

    detail = _blocked_before_iteration_1(repo, "broken on the base commit", "could not run", str(script))
    assert "policy.readable" in detail


@pytest.mark.parametrize(("files", "words"), [
    ({"tests/conftest.py": "import not_installed_anywhere\n"}, ("conftest", "not_installed_anywhere")),
    ({"tests/test_calc.py": "", "tests/__init__.py": ""}, ("no tests",)),
], ids=["conftest_import_error", "no_tests_collected"])
def test_a_test_runner_that_fails_on_its_own_is_broken_at_baseline(
        make_repo, tmp_path: Path, files: dict[str, str], words: tuple[str, ...]) -> None:
    repo = workspace(make_repo, tmp_path, ONE_LINE, files=files, gates=PYTEST)

    _blocked_before_iteration_1(repo, *words)


def test_a_gate_broken_by_the_agents_code_blocks_done(make_repo, tmp_path: Path) -> None:
    hang = Step(message="faster add", claim_done=True, plan_check=("first", "second"),
                edits=(Edit("calc.py", replace=("    return a + b", "    while True:\n        pass")),))
    gate = '[gates.tests]\ncommand = ["python3", "-m", "unittest", "-v"]\ntimeout = "5s"\nformat = "unittest"\n'
    repo = workspace(make_repo, tmp_path, Scenario((hang,)), gates=gate)
    db = Database.open_default()

    outcome = start_run(repo, db=db, max_iterations=1)

    assert outcome.reason is not StopReason.DONE
    first = receipts(db, outcome.run_id)[0]
    assert first["gates"]["tests"]["status"] == "broken" and "timed out" in first["gates"]["tests"]["broken"]
    assert any("is broken" in b for b in first["done_blockers"])
    assert "is broken" in first["feedback"]
    assert "false_done" in {i["kind"] for i in store.incidents(db, outcome.run_id)}


def test_what_the_agent_leaves_in_its_worktree_ends_in_a_rollback(make_repo, tmp_path: Path) -> None:
    # An empty nested repository once made onloop's own `git add -A` fail and the run crash.
    nested = Step(message="vendored", plan_check=("first", "second"), claim_done=True,
                  edits=(Edit("calc.py", append="\nX = 1\n"),), commands=(("git", "init", "-q", "vendor/lib"),))
    repo = workspace(make_repo, tmp_path, Scenario((nested,), default=Step(message="idle")))
    db = Database.open_default()

    outcome = start_run(repo, db=db, max_iterations=2)

    assert outcome.reason is not StopReason.DONE
    row = store.get_run(db, outcome.run_id)
    assert row.exit_code == outcome.exit_code and row.stop_reason == outcome.reason.value
    first = receipts(db, outcome.run_id)[0]
    assert first["status"] == "rolled_back"
    assert "nested_repository" in {i["kind"] for i in store.incidents(db, outcome.run_id)}
    assert not (Path(row.worktree) / "vendor").exists()
