"""Creating a run (worktree, branch, record) and reopening one for `--resume`.

A run lives under `ONLOOP_HOME/runs/<run-id>/`: `worktree/` (its git worktree on `onloop/<run-id>`),
`logs/` (transcripts, gate logs, rejected diffs), `scratch/` (per-iteration private dirs: agent config,
gate reports). The operator's workspace keeps only its `onloop.toml` and the canon files.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from onloop.clock import Clock, utc_iso
from onloop.config import Config
from onloop.errors import UsageError
from onloop.store import runs as store
from onloop.store.db import Database, onloop_home
from onloop.store.runs import RunRow
from onloop.workspace import create_worktree, head_commit, repo_root


@dataclass(frozen=True, slots=True)
class RunPaths:
    root: Path

    @property
    def worktree(self) -> Path:
        return self.root / "worktree"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def scratch(self) -> Path:
        return self.root / "scratch"

    def transcript(self, n: int, attempt: int = 1) -> Path:
        suffix = "" if attempt == 1 else f".attempt{attempt}"
        return self.logs / f"iteration-{n:03d}{suffix}.transcript.jsonl"

    def iteration_scratch(self, n: int, attempt: int = 1) -> Path:
        return self.scratch / f"iteration-{n:03d}-{attempt}"


def run_paths(run_id: str) -> RunPaths:
    return RunPaths(onloop_home() / "runs" / run_id)


def new_run_id(clock: Clock) -> str:
    return clock.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def create_run(db: Database, workspace: Path, config: Config, clock: Clock) -> RunRow:
    """A new run: its worktree and branch from the workspace's HEAD, and its row in the store."""
    repo = repo_root(workspace)
    base = head_commit(repo)
    run_id = new_run_id(clock)
    paths = run_paths(run_id)
    for folder in (paths.logs, paths.scratch):
        folder.mkdir(parents=True, exist_ok=True)
    branch = create_worktree(repo, run_id, base, paths.worktree)
    now = utc_iso(clock.now())
    store.insert_run(db, {
        "id": run_id, "workspace": str(repo), "worktree": str(paths.worktree), "branch": branch,
        "base_commit": base, "mode": config.run.mode, "backend": config.run.backend, "status": "created",
        "config_json": config.model_dump_json(), "created_at": now, "updated_at": now,
        "last_checkpoint": base, "pid": os.getpid(),
    })
    return store.get_run(db, run_id)


def frozen_config(row: RunRow) -> Config:
    """The config the run started with (so a resume behaves the same even if onloop.toml changed)."""
    return Config.model_validate_json(row.config_json)


def check_resumable(row: RunRow) -> None:
    if row.status == "stopped" and row.stop_reason not in ("interrupted", "max_iterations", "max_time", "budget"):
        raise UsageError(f"run {row.id} ended as {row.stop_reason}; start a new run instead")
    if row.status in ("running", "paused") and row.pid and _alive(row.pid) and row.pid != os.getpid():
        raise UsageError(f"run {row.id} is still running (pid {row.pid}); use `onloop steer {row.id} stop` first")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
