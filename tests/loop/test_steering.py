"""Steering a live run from another thread, through the store, as `onloop steer` does."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from onloop.clock import SystemClock
from onloop.loop.api import start_run
from onloop.loop.engine import RunOutcome
from onloop.loop.steering import steer
from onloop.loop.stop import StopReason
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.testing import Scenario, Step
from tests.loop.helpers import receipts, workspace
from tests.loop.test_run_e2e import feature


def _run_in_thread(repo: Path, db: Database) -> tuple[threading.Thread, list[RunOutcome]]:
    result: list[RunOutcome] = []
    thread = threading.Thread(target=lambda: result.append(start_run(repo, db=db)), daemon=True)
    thread.start()
    return thread, result


def _current_run(db: Database, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = store.list_runs(db)
        if runs and store.running_iterations(db, runs[0].id):
            return runs[0].id
        time.sleep(0.05)
    raise AssertionError("no running iteration")


def _slow(step: Step) -> Step:
    return Step(**{**step.__dict__, "delay": 1.5})


def test_say_is_injected_at_the_top_of_the_next_iteration(make_repo, tmp_path: Path) -> None:
    db = Database.open_default()
    repo = workspace(make_repo, tmp_path, Scenario((_slow(feature("one", "first")), feature("two", "second"))))
    thread, result = _run_in_thread(repo, db)
    run_id = _current_run(db)

    steer(db, run_id, "say", "Use integers only; no floats.", SystemClock())
    thread.join(60)

    assert result and result[0].reason is StopReason.DONE
    first, second = receipts(db, run_id)
    assert first["operator_messages"] == [] and second["operator_messages"] == ["Use integers only; no floats."]
    context = Path(second["context_path"]).read_text()
    assert context.startswith("## Messages from the operator (read these first)\n\n- Use integers only; no floats.")
    row = db.conn.execute("SELECT consumed_iteration FROM steering WHERE run_id = ?", (run_id,)).fetchone()
    assert row[0] == 2


def test_pause_holds_the_loop_until_resume(make_repo, tmp_path: Path) -> None:
    db = Database.open_default()
    repo = workspace(make_repo, tmp_path, Scenario((_slow(feature("one", "first")), feature("two", "second"))))
    thread, result = _run_in_thread(repo, db)
    run_id = _current_run(db)

    steer(db, run_id, "pause", None, SystemClock())
    deadline = time.monotonic() + 30
    while store.get_run(db, run_id).status != "paused" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.get_run(db, run_id).status == "paused"
    time.sleep(1.0)
    assert store.get_run(db, run_id).iterations_done == 1, "nothing runs while paused"
    steer(db, run_id, "resume", None, SystemClock())
    thread.join(60)

    assert result and result[0].reason is StopReason.DONE and result[0].iterations == 2


def test_stop_ends_the_run_as_interrupted(make_repo, tmp_path: Path) -> None:
    db = Database.open_default()
    repo = workspace(make_repo, tmp_path, Scenario((_slow(feature("one", "first")), feature("two", "second"))))
    thread, result = _run_in_thread(repo, db)
    run_id = _current_run(db)

    steer(db, run_id, "stop", None, SystemClock())
    thread.join(60)

    assert result and result[0].reason is StopReason.INTERRUPTED and result[0].exit_code == 130
    assert result[0].iterations == 1
    row = store.get_run(db, run_id)
    assert row.status == "stopped" and row.stop_reason == "interrupted"
