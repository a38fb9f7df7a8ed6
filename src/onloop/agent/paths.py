"""Keeping every path the agent names inside the worktree.

The built-in agent has no shell, so paths are its only way out. A path is refused when it is absolute,
contains `..`, or resolves (through symlinks, with `os.path.realpath`) to somewhere outside the
worktree. The git directory is refused too: a hook written into `.git/hooks` would run with onloop's
rights at the next commit, and `.git/config` can hold credentials in remote URLs.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath


class PathRefused(Exception):
    """The path would leave the worktree (`guardrail` says which rule tripped)."""

    def __init__(self, message: str, *, path: str, guardrail: str = "path_escape") -> None:
        super().__init__(message)
        self.path = path
        self.guardrail = guardrail


def resolve_inside(root: Path, raw: str) -> Path:
    """The real path of `raw` (relative to `root`), guaranteed to be inside `root`."""
    if not raw or "\x00" in raw:
        raise PathRefused("an empty or NUL-containing path is not allowed", path=raw)
    if os.path.isabs(raw) or raw.startswith("~"):
        raise PathRefused(f"{raw!r}: absolute paths are not allowed; use a path relative to the worktree",
                          path=raw)
    parts = PurePosixPath(raw.replace("\\", "/")).parts
    if ".." in parts:
        raise PathRefused(f"{raw!r}: '..' is not allowed; paths stay inside the worktree", path=raw)
    real_root = os.path.realpath(root)
    candidate = os.path.realpath(os.path.join(real_root, raw))
    if candidate != real_root and not candidate.startswith(real_root + os.sep):
        raise PathRefused(f"{raw!r} resolves outside the worktree (through a symlink)", path=raw)
    relative = os.path.relpath(candidate, real_root)
    if relative == ".git" or relative.startswith(".git" + os.sep):
        raise PathRefused(f"{raw!r}: the git directory is off limits", path=raw, guardrail="git_dir")
    return Path(candidate)


def relative_to_root(root: Path, path: Path) -> str:
    return os.path.relpath(path, os.path.realpath(root))
