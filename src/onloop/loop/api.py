"""Starting and resuming runs: the functions the CLI, the dashboard and automations all call.

`resume_run` is idempotent, so a supervisor may call it after every crash: a run that stopped for good
(done, blocked, stuck, ...) is not run again; its stored outcome is reported and returned as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from onloop.clock import Clock, SystemClock
from onloop.config import CONFIG_FILE, Config, load_config
from onloop.loop.engine import Engine, RunOutcome, SandboxFactory, apply_overrides, preflight
from onloop.loop.events import EventLog, QuietReporter, Reporter
from onloop.loop.recovery import recover_interrupted
from onloop.loop.setup import (
    check_resumable,
    create_run,
    frozen_config,
    is_finished,
    refuse_uncommitted,
    uncommitted_inputs,
)
from onloop.loop.state import RunState
from onloop.loop.stop import StopReason
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.store.runs import RunRow
from onloop.workspace import repo_root


def start_run(workspace: Path, *, db: Database | None = None, config: Config | None = None,
              clock: Clock | None = None, reporter: Reporter | None = None,
              sandbox_factory: SandboxFactory | None = None, include_uncommitted: bool = False,
              **overrides: object) -> RunOutcome:
    """Start a new run in `workspace` (a git repository with an onloop.toml) and loop until it stops.

    Uncommitted changes to the files the run reads (plan, prompts, specs, AGENTS.md) are refused as a
    UsageError, unless `include_uncommitted`: then they are committed on the run's branch as its base."""
    db = db or Database.open_default()
    clock = clock or SystemClock()
    reporter = reporter or QuietReporter()
    root = repo_root(workspace)
    config = apply_overrides(config or load_config(root / CONFIG_FILE), **overrides)
    preflight(config, root)
    pending = uncommitted_inputs(root, config)
    if not include_uncommitted:
        refuse_uncommitted(pending)
    row = create_run(db, root, config, clock, include=pending)
    if pending:
        EventLog(db, row.id, clock, reporter).emit(
            "uncommitted_included", f"committed {len(pending)} uncommitted file(s) to {row.branch} only, as the "
            f"run's base {row.base_commit[:10]} (your branch and checkout are unchanged): "
            f"{', '.join(map(str, pending))}", files=[item.path for item in pending], base_commit=row.base_commit)
    engine = Engine(db, row, config, clock, reporter, sandbox_factory or SandboxFactory())
    return engine.execute()


def resume_run(run_id: str, *, db: Database | None = None, clock: Clock | None = None,
               reporter: Reporter | None = None, sandbox_factory: SandboxFactory | None = None,
               **overrides: object) -> RunOutcome:
    """Continue a run after a stop or a crash: same branch, counters, spend and plan."""
    db = db or Database.open_default()
    clock = clock or SystemClock()
    reporter = reporter or QuietReporter()
    row = store.get_run(db, run_id)
    if is_finished(row):
        return stored_outcome(row, reporter)
    check_resumable(row)
    config = apply_overrides(frozen_config(row), **overrides)
    engine = Engine(db, row, config, clock, reporter, sandbox_factory or SandboxFactory())
    state = RunState.from_row(row)
    recovered = recover_interrupted(db, row, engine.backend, state, engine.events, clock, rollback_worktree=True)
    engine.state = state
    store.update_run(db, row.id, {**state.counters(), "status": "running", "stop_reason": None, "exit_code": None,
                                  "pid": os.getpid()})
    engine.events.emit("run_resumed", f"resuming run {row.id} after {state.iterations_done} iteration(s)",
                       recovered=recovered, spend_usd=str(state.spend_usd))
    return engine.execute()


def stored_outcome(row: RunRow, reporter: Reporter) -> RunOutcome:
    """The outcome of a run that already stopped for good, reported (not recorded) as if it just had."""
    reason = StopReason(row.stop_reason)
    data = {"run_id": row.id, "iteration": None, "reason": reason.value, "exit_code": reason.exit_code,
            "iterations": row.iterations_done, "spend_usd": str(row.spend_usd), "already_stopped": True}
    reporter.report("run_resumed", f"run {row.id} already stopped ({reason.value}); nothing to resume", data)
    reporter.report("run_stopped", f"{reason.value}: {row.stop_detail or ''}", data)
    return RunOutcome(row.id, reason, row.stop_detail or "", row.iterations_done)
