"""Creating a run (worktree, branch, record), reopening one for `--resume`, and telling whether its
process is still there.

A run lives under `ONLOOP_HOME/runs/<run-id>/`: `worktree/` (its git worktree on `onloop/<run-id>`),
`logs/` (transcripts, gate logs, rejected diffs), `scratch/` (per-iteration private dirs: agent config,
gate reports). The operator's workspace keeps only its `onloop.toml` and the canon files.

The worktree is made from the workspace's HEAD, so the canon files the run reads (the plan, the
prompts, the specs, AGENTS.md) are the committed ones. An uncommitted edit to one of them would be
silently ignored; `uncommitted_inputs` finds them so the run can refuse, or, when the operator asks,
`create_run` commits exactly those files on the run's branch (never the operator's) and makes that
commit the run's base: the baseline, the gates and the plan are all judged against what the operator
sees in their checkout.

A run that says `running` may belong to a process that is gone (`kill -9`, a crash, a reboot).
`owner_alive` decides from the pid, and on Linux from the process's start time too, so that a pid
the kernel has since given to another process does not pass for the run's.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from onloop.clock import Clock, utc_iso
from onloop.config import Config
from onloop.errors import UsageError
from onloop.store import runs as store
from onloop.store.db import Database, onloop_home
from onloop.store.runs import RunRow
from onloop.workspace import checkpoint, create_worktree, git, head_commit, repo_root

# Stop reasons a run continues from on `--resume`; any other stop is final (resuming it is a no-op).
RESUMABLE_REASONS = ("interrupted", "max_iterations", "max_time", "budget")
# Statuses that say a process owns the run right now.
LIVE_STATUSES = ("created", "running", "paused")
GONE_STATUS = "interrupted (process gone)"
# The stored update times have whole seconds, /proc's boot time too: a process that started within
# this much after the run's last write may still be the one that wrote it.
_START_SLACK_SECONDS = 2.0


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


@dataclass(frozen=True, slots=True)
class PendingFile:
    """A file the run reads from the workspace whose working copy differs from HEAD."""

    path: str   # relative to the repository root
    change: str  # modified | untracked | deleted

    def __str__(self) -> str:
        return f"{self.path} ({self.change})"


def run_paths(run_id: str) -> RunPaths:
    return RunPaths(onloop_home() / "runs" / run_id)


def new_run_id(clock: Clock) -> str:
    return clock.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def create_run(db: Database, workspace: Path, config: Config, clock: Clock,
               include: tuple[PendingFile, ...] = ()) -> RunRow:
    """A new run: its worktree and branch from the workspace's HEAD, and its row in the store.

    `include` (from `uncommitted_inputs`) is committed on the run's branch right after it is made,
    and that commit is the run's base."""
    repo = repo_root(workspace)
    run_id = new_run_id(clock)
    paths = run_paths(run_id)
    for folder in (paths.logs, paths.scratch):
        folder.mkdir(parents=True, exist_ok=True)
    head = head_commit(repo)
    branch = create_worktree(repo, run_id, head, paths.worktree)
    base = _commit_included(repo, paths.worktree, include) if include else head
    now = utc_iso(clock.now())
    store.insert_run(db, {
        "id": run_id, "workspace": str(repo), "worktree": str(paths.worktree), "branch": branch,
        "base_commit": base, "mode": config.run.mode, "backend": config.run.backend, "status": "created",
        "config_json": config.model_dump_json(), "created_at": now, "updated_at": now,
        "last_checkpoint": base, "pid": os.getpid(),
    })
    return store.get_run(db, run_id)


def run_inputs(config: Config) -> tuple[str, ...]:
    """The workspace paths a run reads its instructions from (`[context]` in onloop.toml)."""
    context = config.context
    return tuple(dict.fromkeys((context.plan, context.prompt, context.plan_prompt, context.agents, context.specs)))


def uncommitted_inputs(repo: Path, config: Config) -> tuple[PendingFile, ...]:
    """The run's input files that are modified, deleted or untracked in the workspace (not ignored).

    Read without taking the index lock (`--no-optional-locks`), so not even git's stat cache in the
    operator's index changes."""
    out = git(repo, "--no-optional-locks", "--literal-pathspecs", "status", "--porcelain", "-z", "--no-renames",
              "--untracked-files=all", "--", *run_inputs(config))
    pending = []
    for record in filter(None, out.split("\0")):
        code, path = record[:2], record[3:]
        change = "untracked" if code == "??" else "deleted" if "D" in code else "modified"
        pending.append(PendingFile(path, change))
    return tuple(pending)


def refuse_uncommitted(pending: tuple[PendingFile, ...]) -> None:
    if pending:
        raise UsageError(
            f"uncommitted changes in files the run reads: {', '.join(map(str, pending))}. The run's worktree is "
            "made from HEAD and would not see them: commit them, or pass --include-uncommitted to commit them "
            "to the run's branch only (your branch and checkout stay as they are)")


def _commit_included(repo: Path, worktree: Path, include: tuple[PendingFile, ...]) -> str:
    """The workspace's copies of `include` in the fresh worktree, committed there; returns the commit.

    The worktree has just been checked out, so it holds no other change: the commit is exactly these
    files. Only the workspace's files are read; its index and working tree are not touched."""
    for item in include:
        source, target = repo / item.path, worktree / item.path
        if target.is_symlink() or target.is_file():
            target.unlink()
        if source.is_symlink():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    names = ", ".join(item.path for item in include)
    return checkpoint(worktree, f"onloop: the workspace's uncommitted run inputs\n\n{names}")


def frozen_config(row: RunRow) -> Config:
    """The config the run started with (so a resume behaves the same even if onloop.toml changed)."""
    return Config.model_validate_json(row.config_json)


def is_finished(row: RunRow) -> bool:
    """The run stopped for good (done, blocked, ...): `--resume` only reports its outcome again."""
    return row.status == "stopped" and row.stop_reason is not None and row.stop_reason not in RESUMABLE_REASONS


def check_resumable(row: RunRow) -> None:
    if row.status in ("running", "paused") and row.pid != os.getpid() and owner_alive(row):
        raise UsageError(f"run {row.id} is still running (pid {row.pid}); use `onloop steer {row.id} stop` first")


def shown_status(row: RunRow) -> str:
    """The run's status as the operator should read it: a live status whose process is gone says so."""
    if row.status in LIVE_STATUSES and not owner_alive(row):
        return GONE_STATUS
    return row.status


def resume_command(row: RunRow) -> str:
    return f"onloop run --resume {row.id}"


def owner_alive(row: RunRow) -> bool:
    """Whether the process recorded as the run's owner still runs (not merely: some process has its pid).

    Every write to the run's row comes from its owner, so the owner started before the row's last
    update; a live process with that pid that started later is another process the pid was reused for.
    Without /proc (not Linux) the pid's liveness is all there is to go by."""
    if not row.pid or not _pid_exists(row.pid):
        return False
    stat = _proc_stat(row.pid)
    if stat is None:
        return True
    state, started = stat
    if state in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    written = _parse_time(row.updated_at)
    return written is None or started <= written + _START_SLACK_SECONDS


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _proc_stat(pid: int) -> tuple[str, float] | None:
    """The process's state letter and start time (epoch seconds), from /proc; None where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        # After the command name: state is field 3 of stat(5), starttime (clock ticks after boot) field 22.
        return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def _parse_time(text: str | None) -> float | None:
    """A stored time (ISO 8601 from `utc_iso`, or SQLite's `datetime('now')` in UTC) as epoch seconds."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
