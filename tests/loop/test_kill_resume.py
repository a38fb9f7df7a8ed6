"""`kill -9` of onloop itself mid-iteration, then `onloop run --resume`: nothing is lost.

onloop runs as a real subprocess through its real entry point; the test kills it with SIGKILL while the
agent of iteration 2 is half-way through, then resumes the run from the CLI and checks commits,
receipts, spend and the interrupted iteration's partial transcript.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from onloop.store import runs as store
from onloop.store.db import Database
from onloop.testing import Edit, Scenario, Step
from tests.loop.helpers import onloop_cli, receipts, workspace
from tests.loop.test_run_e2e import feature


def _wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_kill_9_mid_iteration_then_resume_loses_nothing(make_repo, tmp_path: Path) -> None:
    slow = Step(message="half way", delay=60, usage={"input_tokens": 4000, "output_tokens": 400},
                edits=(Edit("calc.py", append="\n\ndef partial():\n    return 0\n"),))
    scenario = Scenario((feature("one", "first", cost="0.05"), slow, feature("two", "second", cost="0.05")))
    repo = workspace(make_repo, tmp_path, scenario)
    proc = subprocess.Popen([sys.executable, "-m", "onloop.cli", "run", "-C", str(repo), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    db = Database.open_default()

    def iteration_two_streaming() -> bool:
        runs = store.list_runs(db)
        if not runs:
            return False
        rows = [r for r in store.running_iterations(db, runs[0].id) if r["n"] == 2]
        path = rows[0]["transcript_path"] if rows else None
        return bool(path) and Path(path).exists() and "tool_use" in Path(path).read_text()

    _wait_for(iteration_two_streaming)
    run_id = store.list_runs(db)[0].id
    first_commit = store.get_iteration(db, run_id, 1)["commit_sha"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(0.5)
    leftovers = subprocess.run(["pgrep", "-f", f"scenario.*{run_id}"], capture_output=True, text=True).stdout
    assert leftovers.strip() == "", "the agent dies with onloop (bwrap --die-with-parent)"
    assert store.get_run(db, run_id).status == "running", "a kill -9 leaves the run marked running"

    resumed = onloop_cli("run", "--resume", run_id, "--quiet")

    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    row = store.get_run(db, run_id)
    assert row.stop_reason == "done" and row.iterations_done == 3
    its = store.get_iterations(db, run_id)
    assert [i["status"] for i in its] == ["completed", "interrupted", "completed"]
    assert its[0]["commit_sha"] == first_commit, "the commit of iteration 1 survives"
    interrupted = its[1]
    assert Path(interrupted["transcript_path"]).read_text().count('"type": "assistant"') >= 2
    assert interrupted["tokens_in"] > 0, "usage streamed before the kill is recovered from the transcript"
    assert row.tokens_in == sum(i["tokens_in"] for i in its), "the run's counters include the interrupted one"
    assert row.spend_usd == sum(Decimal(i["cost_usd"] or "0") for i in its) == Decimal("0.10")
    kept = subprocess.run(["git", "show", f"refs/onloop/{run_id}/rejected/2:calc.py"], cwd=repo,
                          capture_output=True, text=True).stdout
    assert "def partial" in kept, "the interrupted iteration's partial work is kept under a ref"
    assert "def partial" not in (Path(row.worktree) / "calc.py").read_text()
    assert receipts(db, run_id)[2]["delta"]["plan_items_closed"] == ["second"]


def test_sigterm_stops_as_interrupted_and_resume_finishes(make_repo, tmp_path: Path) -> None:
    slow = Step(message="slow", delay=60, edits=(Edit("calc.py", append="\nX = 1\n"),))
    scenario = Scenario((slow, feature("one", "first"), feature("two", "second")))
    repo = workspace(make_repo, tmp_path, scenario)
    proc = subprocess.Popen([sys.executable, "-m", "onloop.cli", "run", "-C", str(repo), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = Database.open_default()
    _wait_for(lambda: bool(store.list_runs(db)) and bool(store.running_iterations(db, store.list_runs(db)[0].id)))
    run_id = store.list_runs(db)[0].id
    time.sleep(0.5)

    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)

    assert proc.returncode == 130, err
    row = store.get_run(db, run_id)
    assert row.stop_reason == "interrupted" and row.status == "stopped"
    assert store.get_iteration(db, run_id, 1)["status"] == "interrupted"
    resumed = onloop_cli("run", "--resume", run_id, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert [i["status"] for i in store.get_iterations(db, run_id)] == ["interrupted", "completed", "completed"]


def test_log_follow_streams_until_the_run_stops(make_repo, tmp_path: Path) -> None:
    scenario = Scenario((Step(**{**feature("one", "first").__dict__, "delay": 1.0}), feature("two", "second")))
    repo = workspace(make_repo, tmp_path, scenario)
    proc = subprocess.Popen([sys.executable, "-m", "onloop.cli", "run", "-C", str(repo), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = Database.open_default()
    _wait_for(lambda: bool(store.list_runs(db)))
    run_id = store.list_runs(db)[0].id

    follow = onloop_cli("log", run_id, "--follow", timeout=60)

    assert proc.wait(timeout=60) == 0
    lines = follow.stdout.splitlines()
    assert any("run_started" in line for line in lines[:3])
    assert "run_stopped" in lines[-1] and "done" in lines[-1]
    assert sum("iteration_started" in line for line in lines) == 2
