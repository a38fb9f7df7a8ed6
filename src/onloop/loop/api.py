"""Starting and resuming runs: the functions the CLI, the dashboard and automations all call."""

from __future__ import annotations

from pathlib import Path

from onloop.clock import Clock, SystemClock
from onloop.config import CONFIG_FILE, Config, load_config
from onloop.loop.engine import Engine, RunOutcome, SandboxFactory, apply_overrides, preflight
from onloop.loop.events import QuietReporter, Reporter
from onloop.loop.recovery import recover_interrupted
from onloop.loop.setup import check_resumable, create_run, frozen_config
from onloop.loop.state import RunState
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.workspace import repo_root


def start_run(workspace: Path, *, db: Database | None = None, config: Config | None = None,
              clock: Clock | None = None, reporter: Reporter | None = None,
              sandbox_factory: SandboxFactory | None = None, **overrides: object) -> RunOutcome:
    """Start a new run in `workspace` (a git repository with an onloop.toml) and loop until it stops."""
    db = db or Database.open_default()
    clock = clock or SystemClock()
    root = repo_root(workspace)
    config = apply_overrides(config or load_config(root / CONFIG_FILE), **overrides)
    preflight(config, root)
    row = create_run(db, root, config, clock)
    engine = Engine(db, row, config, clock, reporter or QuietReporter(), sandbox_factory or SandboxFactory())
    return engine.execute()


def resume_run(run_id: str, *, db: Database | None = None, clock: Clock | None = None,
               reporter: Reporter | None = None, sandbox_factory: SandboxFactory | None = None,
               **overrides: object) -> RunOutcome:
    """Continue a run after a stop or a crash: same branch, counters, spend and plan."""
    db = db or Database.open_default()
    clock = clock or SystemClock()
    row = store.get_run(db, run_id)
    check_resumable(row)
    config = apply_overrides(frozen_config(row), **overrides)
    engine = Engine(db, row, config, clock, reporter or QuietReporter(), sandbox_factory or SandboxFactory())
    state = RunState.from_row(row)
    recovered = recover_interrupted(db, row, engine.backend, state, engine.events, clock, rollback_worktree=True)
    engine.state = state
    store.update_run(db, row.id, {**state.counters(), "status": "running", "stop_reason": None, "exit_code": None})
    engine.events.emit("run_resumed", f"resuming run {row.id} after {state.iterations_done} iteration(s)",
                       recovered=recovered, spend_usd=str(state.spend_usd))
    return engine.execute()

