"""Sealed checkouts: where gates run, apart from the agent's worktree.

Gates run code the agent wrote. If they ran in the agent's worktree, that code could rewrite tests,
plant ignored files or delete itself, and the next commit would carry the result unaudited. So after
the agent's turn and the audit, onloop commits the candidate first, then runs every gate in a separate
directory holding exactly the tree it decided on (the candidate commit with the test harness from
the base, see `onloop.gates.harness`), and resets that directory before every gate run. What a gate
writes never reaches a commit, files git ignores are simply not there, and one gate cannot prepare
the ground for the next (tests rewriting the sources a type checker then reads).

Mechanics, chosen for cost (the checkout is reused, never cloned):
- one directory and one index file per slot (`candidate`, `base`), driven through the repository's
  git dir with GIT_DIR / GIT_WORK_TREE / GIT_INDEX_FILE: no registered worktree, no `.git` inside,
  the operator's index and HEAD untouched;
- `git read-tree --reset -u TREE` is a one-way merge that lstat()s every index entry and checks out
  again whatever a gate modified, deleted, replaced by a link or re-moded, while entries unchanged
  between trees cost only the lstat (racily clean entries are compared by content, as git always does);
- first one `find` walk deletes the fifos, sockets and devices git does not see and gives directories
  and files their owner's permissions back (git tracks only the executable bit);
- `git clean -ffdxq` then removes everything the tree does not hold, ignored files and nested
  repositories included;
- if either fails (a gate left a directory it cannot enter, when onloop is not root), the directory
  is made removable, deleted, and checked out fresh: slower, never wrong.
A reset therefore costs one stat pass over the tree plus what changed (measured in
`benchmarks/loop_overhead`). Hooks never run (`core.hooksPath=/dev/null`).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from onloop.errors import WorkspaceError

_GIT_TIMEOUT = 600
_NO_HOOKS = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")


class SealedCheckout:
    """One directory that can be set to exactly a tree of the repository, as often as needed."""

    def __init__(self, git_dir: Path, root: Path) -> None:
        self.git_dir = git_dir
        self.root = root
        self.index = root.parent / f".{root.name}.index"
        self.tree: str | None = None

    def prepare(self, tree: str) -> Path:
        """Make the directory hold exactly `tree` (a tree or commit sha), nothing more; returns it."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._reset(tree)
        except WorkspaceError:
            self._wipe()
            self.root.mkdir(parents=True)
            self._reset(tree)
        self.tree = tree
        return self.root

    def _reset(self, tree: str) -> None:
        _restore_modes(self.root)
        self._git("read-tree", "--reset", "-u", tree)
        self._git("clean", "-ffdxq")

    def _wipe(self) -> None:
        _make_removable(self.root)
        shutil.rmtree(self.root, ignore_errors=True)
        self.index.unlink(missing_ok=True)
        if self.root.exists():
            raise WorkspaceError(f"cannot remove the sealed checkout {self.root}")

    def changed_tracked(self) -> list[str]:
        """Tracked files of the tree that are not as the tree has them any more (changed, re-moded or
        deleted while a gate ran): a gate may write only its own directories, never the checkout."""
        env = self._env()
        subprocess.run(["git", *_NO_HOOKS, "update-index", "-q", "--refresh"], cwd=self.root, env=env,
                       capture_output=True, timeout=_GIT_TIMEOUT)
        out = self._git("diff-files", "--name-only", "-z")
        return [path for path in out.split("\0") if path]

    def remove(self) -> None:
        """Delete the directory and its index (the end of a run)."""
        self._wipe()
        self.tree = None

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "GIT_DIR": str(self.git_dir), "GIT_WORK_TREE": str(self.root),
               "GIT_INDEX_FILE": str(self.index), "GIT_TERMINAL_PROMPT": "0"}
        for name in ("GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_CEILING_DIRECTORIES"):
            env.pop(name, None)
        return env

    def _git(self, *args: str) -> str:
        try:
            done = subprocess.run(["git", *_NO_HOOKS, *args], cwd=self.root, env=self._env(), capture_output=True,
                                  text=True, errors="replace", timeout=_GIT_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WorkspaceError(f"git {args[0]} in the sealed checkout failed: {exc}") from None
        if done.returncode != 0:
            raise WorkspaceError(f"git {args[0]} in the sealed checkout failed: {done.stderr.strip()[:300]}")
        return done.stdout


def _restore_modes(root: Path) -> None:
    """What git neither tracks nor cleans: fifos, sockets and device nodes are deleted, and directories
    and files get their owner's permissions back (git tracks only the executable bit, and a gate with
    every capability dropped cannot enter a directory it made 000). One `find` walk, pre-order, so a
    directory is opened up before it is entered."""
    special = ["(", "-type", "p", "-o", "-type", "s", "-o", "-type", "b", "-o", "-type", "c", ")", "-delete"]
    dirs = ["-type", "d", "!", "-perm", "-u=rwx", "-exec", "chmod", "u+rwx", "{}", ";"]
    files = ["-type", "f", "!", "-perm", "-u=rw", "-exec", "chmod", "u+rw", "{}", "+"]
    try:
        done = subprocess.run(["find", str(root), *special, "-o", *dirs, "-o", *files], capture_output=True, text=True,
                              timeout=_GIT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WorkspaceError(f"cannot restore the sealed checkout {root}: {exc}") from None
    if done.returncode != 0:
        raise WorkspaceError(f"cannot restore the sealed checkout {root}: {done.stderr.strip()[:300]}")


def _make_removable(root: Path) -> None:
    """Give the owner back every permission under `root` (what a gate may have taken away), without
    following links."""
    if not root.exists():
        return
    for current, dirs, files in os.walk(root, onerror=lambda _e: None):
        for name in dirs:
            _chmod_owner(Path(current) / name, stat.S_IRWXU)
        for name in files:
            _chmod_owner(Path(current) / name, stat.S_IRUSR | stat.S_IWUSR)
    _chmod_owner(root, stat.S_IRWXU)


def _chmod_owner(path: Path, bits: int) -> None:
    try:
        info = path.lstat()
        if not stat.S_ISLNK(info.st_mode):
            path.chmod(stat.S_IMODE(info.st_mode) | bits)
    except OSError:
        pass  # gone already, or not ours: rmtree reports what is left
