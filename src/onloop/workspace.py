"""git, through the git CLI: worktrees, branches, checkpoints, diffs, rollbacks.

The git CLI (not a library) because it is the fastest at worktrees and is exactly what users run.
Rules this module keeps, because the operator's checkout is sacred:
- a run works only in its own worktree on its own branch `onloop/<run-id>`;
- `reset --hard` and `clean` run only inside a run's worktree, and `_assert_run_worktree` checks it;
- nothing is force-pushed, no user branch is moved, the user's hooks never run on onloop's commits;
- a rolled-back iteration is first committed and kept under `refs/onloop/<run-id>/rejected/<n>`, so its
  diff survives for the post-mortem while the run branch moves on without it.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from onloop.errors import UsageError, WorkspaceError

BRANCH_PREFIX = "onloop/"
_IDENTITY = ("-c", "user.name=onloop", "-c", "user.email=onloop@localhost")
_NO_HOOKS = ("-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false")
# Changes to these do not count as real work when deciding "a real diff" and the verified delta.
NOISE_GLOBS = ("*.log", "*.pyc", "__pycache__/*", "*/__pycache__/*", ".pytest_cache/*", "*.egg-info/*",
               "node_modules/*", ".mypy_cache/*", ".ruff_cache/*", "target/*", "dist/*", "build/*", ".coverage")


def git(cwd: Path, *args: str, check: bool = True, input_text: str | None = None) -> str:
    env = dict(os.environ)
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)
    env["GIT_TERMINAL_PROMPT"] = "0"
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, env=env, input=input_text, check=False
    )
    if check and done.returncode != 0:
        raise WorkspaceError(f"git {' '.join(args[:3])} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def repo_root(path: Path) -> Path:
    try:
        out = git(path, "rev-parse", "--show-toplevel")
    except WorkspaceError:
        raise UsageError(f"{path} is not inside a git repository (run `git init` first)") from None
    return Path(out.strip())


def head_commit(repo: Path, ref: str = "HEAD") -> str:
    try:
        return git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    except WorkspaceError:
        raise UsageError(f"{repo}: no commit at {ref} (commit something first)") from None


def git_common_dir(repo: Path) -> Path:
    out = git(repo, "rev-parse", "--git-common-dir").strip()
    path = Path(out)
    return path if path.is_absolute() else (repo / path).resolve()


@dataclass(frozen=True, slots=True)
class DiffStat:
    files: int
    added: int
    removed: int
    paths: tuple[str, ...]

    @property
    def lines(self) -> int:
        return self.added + self.removed


def branch_name(run_id: str) -> str:
    return f"{BRANCH_PREFIX}{run_id}"


def create_worktree(repo: Path, run_id: str, base: str, path: Path) -> str:
    """A new worktree at `path` on a new branch `onloop/<run-id>` starting at `base`."""
    branch = branch_name(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    git(repo, "worktree", "add", "-q", "-b", branch, str(path), base)
    return branch


def remove_worktree(repo: Path, path: Path) -> None:
    git(repo, "worktree", "remove", "--force", str(path), check=False)


def checkpoint(worktree: Path, message: str) -> str:
    """Commit everything in the worktree (an empty commit if nothing changed); returns the sha."""
    git(worktree, "add", "-A")
    git(worktree, *_IDENTITY, *_NO_HOOKS, "commit", "-q", "--allow-empty", "--no-verify", "-m", message)
    return head_commit(worktree)


def tag(worktree: Path, name: str, sha: str) -> None:
    git(worktree, *_NO_HOOKS, "tag", "-f", name, sha)


def has_uncommitted(worktree: Path) -> bool:
    return bool(git(worktree, "status", "--porcelain", "--untracked-files=all").strip())


def rollback(worktree: Path, run_id: str, iteration: int, to_commit: str, message: str) -> str | None:
    """Keep the iteration's work under refs/onloop/<run>/rejected/<n>, then reset the worktree."""
    _assert_run_worktree(worktree, run_id)
    kept: str | None = None
    if has_uncommitted(worktree) or head_commit(worktree) != to_commit:
        kept = checkpoint(worktree, message)
        git(worktree, "update-ref", f"refs/onloop/{run_id}/rejected/{iteration}", kept)
    git(worktree, "reset", "-q", "--hard", to_commit)
    git(worktree, "clean", "-q", "-fd")
    return kept


def reset_to(worktree: Path, run_id: str, commit: str) -> None:
    _assert_run_worktree(worktree, run_id)
    git(worktree, "reset", "-q", "--hard", commit)
    git(worktree, "clean", "-q", "-fd")


def _assert_run_worktree(worktree: Path, run_id: str) -> None:
    current = git(worktree, "rev-parse", "--abbrev-ref", "HEAD").strip()
    if current != branch_name(run_id):
        raise WorkspaceError(f"refusing to reset {worktree}: it is on {current!r}, not {branch_name(run_id)!r}")


NumStat = list[tuple[str, int, int]]  # (path, lines added, lines removed); binary files count 0 lines


def numstat(worktree: Path, base: str, head: str = "HEAD") -> NumStat:
    """Per-file line counts between two commits, caches and logs left out."""
    out = git(worktree, "diff", "--numstat", "-z", "--no-renames", base, head)
    entries: NumStat = []
    for entry in out.split("\0"):
        parts = entry.split("\t", 2)
        if len(parts) == 3 and not is_noise(parts[2]):
            add, rem, path = parts
            entries.append((path, int(add) if add.isdigit() else 0, int(rem) if rem.isdigit() else 0))
    return entries


def summarize(entries: NumStat, *, ignore: tuple[str, ...] = ()) -> DiffStat:
    kept = [e for e in entries if not any(fnmatch(e[0], pattern) for pattern in ignore)]
    return DiffStat(len(kept), sum(e[1] for e in kept), sum(e[2] for e in kept), tuple(e[0] for e in kept))


def diff_stat(worktree: Path, base: str, head: str = "HEAD", *, ignore: tuple[str, ...] = ()) -> DiffStat:
    """Lines and files changed between two commits, leaving out caches, logs and `ignore` globs."""
    return summarize(numstat(worktree, base, head), ignore=ignore)


def is_noise(path: str) -> bool:
    return any(fnmatch(path, pattern) for pattern in NOISE_GLOBS)


def diff_text(worktree: Path, base: str, head: str = "HEAD") -> str:
    return git(worktree, "diff", "--no-color", base, head)


def working_diff(worktree: Path, base: str) -> str:
    """The worktree's changes against `base`, untracked files included, without touching its index."""
    with tempfile.TemporaryDirectory(prefix="onloop-index-") as scratch:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(scratch) / "index")}
        subprocess.run(["git", "read-tree", base], cwd=worktree, env=env, check=True, capture_output=True)
        subprocess.run(["git", "add", "-A"], cwd=worktree, env=env, check=True, capture_output=True)
        done = subprocess.run(["git", "diff", "--cached", "--no-color", base], cwd=worktree, env=env,
                              capture_output=True, text=True, errors="replace")
        return done.stdout


def show_file(worktree: Path, commit: str, path: str) -> str | None:
    done = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=worktree, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None
