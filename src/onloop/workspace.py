"""git, through the git CLI: worktrees, branches, checkpoints, diffs, rollbacks.

The git CLI (not a library) because it is the fastest at worktrees and is exactly what users run.
Rules this module keeps, because the operator's checkout is sacred:
- a run works only in its own worktree on its own branch `onloop/<run-id>`;
- `reset --hard` and `clean` run only inside a run's worktree, and `_assert_run_worktree` checks it;
- nothing is force-pushed, no user branch is moved, and the operator's hooks (and fsmonitor) never run
  on onloop's git calls: every call goes through `_run`, which turns them off;
- a rolled-back iteration is first committed and kept under `refs/onloop/<run-id>/rejected/<n>`, so its
  diff survives for the post-mortem while the run branch moves on without it.

The worktree is the agent's, so anything may be in it when onloop takes it back: an empty nested
repository that makes `git add -A` fail, fifos and sockets git neither records nor cleans, a `.git`
inside a tracked directory that `git clean` never sees, directories the user cannot list, a 100 GB
sparse file git would hash in full, names that are not UTF-8. `rollback`, `reset_to` and
`clean_untracked` therefore never trust git alone. They first remove what git cannot or must not
record (found by `onloop.policy.worktree_scan.walk`, by lstat only), keep the work only as a best
effort, then `reset --hard` and `clean -ffdx` (ignored files too, except the configured caches), and
check the result against both `git status` and the tree itself. When that is not clean they make the
tree removable (owner permission bits only, never through a symlink) and try once more; what is still
left after that is a WorkspaceError that names it. Names from git are parsed from `-z` output and
decoded with surrogate escapes, so a name that is not UTF-8 round-trips to the file system.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from onloop.errors import UsageError, WorkspaceError
from onloop.policy.audit import DEFAULT_MAX_FILE_BYTES
from onloop.policy.worktree_scan import SPECIAL_TYPES, Entry, git_refuses, is_kept, scan_worktree, shown, walk

log = logging.getLogger(__name__)

BRANCH_PREFIX = "onloop/"
_IDENTITY = ("-c", "user.name=onloop", "-c", "user.email=onloop@localhost")
_NO_HOOKS = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "commit.gpgsign=false",
             "-c", "tag.gpgsign=false")
# Changes to these do not count as real work when deciding "a real diff" and the verified delta.
NOISE_GLOBS = ("*.log", "*.pyc", "__pycache__/*", "*/__pycache__/*", ".pytest_cache/*", "*.egg-info/*",
               "node_modules/*", ".mypy_cache/*", ".ruff_cache/*", "target/*", "dist/*", "build/*", ".coverage")
# What a restore must not leave behind, as far as the tree (not git) can tell.
_LEFTOVER_KINDS = frozenset({"special_file", "nested_repository", "unreadable"})
_REPORTED = 10  # leftovers named in a WorkspaceError; the rest are counted


def git(cwd: Path, *args: str, check: bool = True, input_text: str | None = None) -> str:
    """git's stdout (names not UTF-8 kept as surrogate escapes); a failure is a WorkspaceError if `check`."""
    done = _run(cwd, args, input_text=input_text)
    if check and done.returncode != 0:
        raise WorkspaceError(_failure(args, done))
    return done.stdout


def _run(
    cwd: Path,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    errors: str = "surrogateescape",
) -> subprocess.CompletedProcess[str]:
    """One git call with the operator's hooks off; a git that cannot even start is a WorkspaceError."""
    full_env = dict(os.environ)
    full_env.pop("GIT_DIR", None)
    full_env.pop("GIT_WORK_TREE", None)
    full_env["GIT_TERMINAL_PROMPT"] = "0"
    full_env.update(env or {})
    try:
        return subprocess.run(
            ["git", *_NO_HOOKS, *args], cwd=cwd, capture_output=True, text=True, encoding="utf-8", errors=errors,
            env=full_env, input=input_text, check=False,
        )
    except OSError as exc:  # no git binary, or the worktree directory itself is gone
        raise WorkspaceError(f"git {' '.join(args[:3])} could not run in {cwd}: {exc}") from exc


def _failure(args: Sequence[str], done: subprocess.CompletedProcess[str]) -> str:
    detail = _printable(done.stderr.strip() or done.stdout.strip())
    return f"git {' '.join(args[:3])} failed: {detail}"


def _printable(text: str) -> str:
    # git echoes file names; one that is not UTF-8 holds surrogate escapes, which no database stores.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


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
    git(worktree, *_IDENTITY, "commit", "-q", "--allow-empty", "--no-verify", "-m", message)
    return head_commit(worktree)


def tag(worktree: Path, name: str, sha: str) -> None:
    git(worktree, "tag", "-f", name, sha)


def has_uncommitted(worktree: Path) -> bool:
    return bool(git(worktree, "status", "--porcelain", "--untracked-files=all").strip())


def rollback(
    worktree: Path,
    run_id: str,
    iteration: int,
    to_commit: str,
    message: str,
    *,
    keep: Sequence[str] = (),
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> str | None:
    """Keep the iteration's work under refs/onloop/<run>/rejected/<n>, then restore the worktree.

    Returns the kept commit, or None when there was nothing to keep or keeping it failed (logged:
    the rollback itself matters more than its souvenir). What git cannot or must not record is
    removed first and listed in the kept commit's message: special files, nested `.git` entries,
    names git refuses, and new or changed files above `max_file_bytes` (never hashed). Afterwards the
    worktree is exactly at `to_commit`, the `keep` globs (the configured caches) aside; otherwise
    this raises WorkspaceError naming what is left.
    """
    _open_root(worktree)
    _assert_run_worktree(worktree, run_id)
    ref = f"refs/onloop/{run_id}/rejected/{iteration}"
    kept = _keep_rejected(worktree, ref, to_commit, message, keep=keep, max_file_bytes=max_file_bytes)
    _restore(worktree, to_commit, keep)
    return kept


def reset_to(worktree: Path, run_id: str, commit: str, *, keep: Sequence[str] = ()) -> None:
    """The worktree exactly at `commit` (the `keep` globs aside), whatever the agent left; keeps nothing."""
    _open_root(worktree)
    _assert_run_worktree(worktree, run_id)
    _restore(worktree, commit, keep)


def clean_untracked(worktree: Path, run_id: str, keep: Sequence[str] = (), *, scanned: bool = False) -> None:
    """Remove every untracked and ignored file but the `keep` globs, so none survives into the next iteration.

    Called after each checkpoint: the checkpoint committed everything git records, so what is left is
    ignored files (build output, caches that are not configured), special files and nested `.git`
    entries. Tracked files are left as they are. `scanned`: the caller's worktree scan has just found
    nothing git cannot handle (no special files, nested repositories or unreadable entries), so one
    `git clean` is enough, and only if it fails does the full restore (with its checks) run.
    """
    _open_root(worktree)
    _assert_run_worktree(worktree, run_id)
    if scanned and not _attempt(worktree, "clean", "-q", "-ffdx", *_excludes(keep)):
        return
    _restore(worktree, None, keep)


def _assert_run_worktree(worktree: Path, run_id: str) -> None:
    current = git(worktree, "rev-parse", "--abbrev-ref", "HEAD").strip()
    if current != branch_name(run_id):
        raise WorkspaceError(f"refusing to reset {worktree}: it is on {current!r}, not {branch_name(run_id)!r}")


# -- taking a worktree back from the agent ------------------------------------------------------------


def _open_root(worktree: Path) -> None:
    """Give the owner back rwx on the worktree root itself, which the agent owns and may have locked.

    Without it not even git can start there (it cannot chdir). It runs before `_assert_run_worktree`
    only because that check needs git; it changes nothing on a root that is already open to us, as
    an operator's checkout always is.
    """
    try:
        info = worktree.lstat()
    except OSError:
        return  # no root at all: git will say so, as a WorkspaceError
    if stat.S_ISDIR(info.st_mode) and not os.access(worktree, os.R_OK | os.W_OK | os.X_OK):
        _loosen(worktree, info.st_mode)


def _keep_rejected(
    worktree: Path, ref: str, to_commit: str, message: str, *, keep: Sequence[str], max_file_bytes: int
) -> str | None:
    notes = _set_aside(worktree, keep, max_file_bytes)
    if notes:
        log.info("%s: before keeping the rejected work: %s", worktree, "; ".join(notes))
    try:
        if not has_uncommitted(worktree) and head_commit(worktree) == to_commit:
            return None
        sha = checkpoint(worktree, _with_notes(message, notes))
        git(worktree, "update-ref", ref, sha)
    except (WorkspaceError, UsageError) as exc:
        # Not kept, and said so: the restore that follows is what the run depends on.
        log.warning("%s: the rolled-back work could not be kept as %s: %s", worktree, ref, exc)
        return None
    return sha


def _with_notes(message: str, notes: Sequence[str]) -> str:
    if not notes:
        return message
    listed = "\n".join(f"- {note}" for note in notes[:50])
    more = f"\n- ... and {len(notes) - 50} more" if len(notes) > 50 else ""
    return f"{message}\n\nRemoved by onloop before keeping (git cannot or must not record them):\n{listed}{more}"


def _set_aside(worktree: Path, keep: Sequence[str], max_file_bytes: int) -> list[str]:
    """Remove what git cannot record, and new or changed files above the cap; one note each."""
    notes, big = _remove_unrecordable(worktree, keep, collect_above=max_file_bytes)
    if big:
        tracked = _tracked_sizes(worktree)
        cap = f"above the {max_file_bytes:,}-byte cap"
        # A tracked file of unchanged size is the base's own (hashing it costs what the repo always
        # costs); anything else that big is the agent's and is never hashed.
        notes += [_remove(worktree, e, f"a file of {e.size:,} bytes, {cap}")
                  for e in big if tracked.get(e.rel) != e.size]
    return notes


def _remove_unrecordable(
    worktree: Path, keep: Sequence[str], *, collect_above: int | None = None
) -> tuple[list[str], list[Entry]]:
    """Remove special files, nested `.git` entries and names git refuses; also collect the big files."""
    notes: list[str] = []
    big: list[Entry] = []
    for entry in walk(worktree, keep):
        if entry.error is not None:
            continue
        reason = _unrecordable(entry)
        if reason is not None:
            notes.append(_remove(worktree, entry, reason))
        elif collect_above is not None and stat.S_ISREG(entry.mode) and entry.size > collect_above:
            big.append(entry)
    return notes, big


def _unrecordable(entry: Entry) -> str | None:
    if entry.is_git_entry:
        return "a nested repository"
    special = SPECIAL_TYPES.get(stat.S_IFMT(entry.mode))
    if special is not None:
        return f"a {special}"
    if git_refuses(entry.name, symlink=stat.S_ISLNK(entry.mode)):
        return "a name git refuses"
    return None


def _remove(worktree: Path, entry: Entry, what: str) -> str:
    path = worktree / entry.rel
    try:
        if entry.is_dir:
            shutil.rmtree(path)  # fd-based on Linux: never follows a symlink inside
        else:
            path.unlink()
    except OSError as exc:
        return f"could not remove {shown(entry.rel)} ({what}): {exc.strerror or exc}"
    return f"removed {shown(entry.rel)} ({what})"


def _tracked_sizes(worktree: Path) -> dict[str, int]:
    done = _run(worktree, ("ls-tree", "-r", "-z", "-l", "HEAD"))
    sizes: dict[str, int] = {}
    for record in done.stdout.split("\0") if done.returncode == 0 else ():
        meta, _, path = record.partition("\t")
        size = meta.rsplit(" ", 1)[-1].strip()
        if path and size.isdigit():
            sizes[path] = int(size)
    return sizes


def _restore(worktree: Path, commit: str | None, keep: Sequence[str]) -> None:
    """Reset (when `commit` is given) and clean; on failure make the tree removable and retry once."""
    left = _restore_once(worktree, commit, keep)
    if left:
        log.info("%s: restore left %s; loosening permissions and retrying", worktree, "; ".join(left[:_REPORTED]))
        _make_removable(worktree, keep)
        left = _restore_once(worktree, commit, keep)
    if left:
        more = f" (and {len(left) - _REPORTED} more)" if len(left) > _REPORTED else ""
        target = f"commit {commit}" if commit else "its checkpoint"
        raise WorkspaceError(f"could not restore {worktree} to {target}; left: {'; '.join(left[:_REPORTED])}{more}")
    if commit is not None:
        _restore_modes(worktree)


def _restore_once(worktree: Path, commit: str | None, keep: Sequence[str]) -> list[str]:
    notes, _ = _remove_unrecordable(worktree, keep)
    problems = [note for note in notes if note.startswith("could not")]
    if commit is not None:
        problems += _attempt(worktree, "reset", "-q", "--hard", commit)
    # -ff removes nested repositories too, -x ignored files; -e keeps the caches (git honours -e even with -x).
    problems += _attempt(worktree, "clean", "-q", "-ffdx", *_excludes(keep))
    return problems + _leftovers(worktree, keep, tracked=commit is not None)


def _attempt(worktree: Path, *args: str) -> list[str]:
    done = _run(worktree, args)
    return [_failure(args, done)] if done.returncode != 0 else []


def _excludes(keep: Sequence[str]) -> list[str]:
    return [arg for glob in keep for arg in ("-e", _gitignore_pattern(glob))]


def _gitignore_pattern(glob: str) -> str:
    """A keep glob as a gitignore pattern: anchored at the root (as glob_match is), backslashes and
    trailing spaces escaped (gitignore would read the one as an escape and drop the other)."""
    body = glob.lstrip("/").replace("\\", "\\\\")
    stripped = body.rstrip(" ")
    return "/" + stripped + "\\ " * (len(body) - len(stripped))


def _leftovers(worktree: Path, keep: Sequence[str], *, tracked: bool) -> list[str]:
    """What is still there that should not be: by git's account, then by the tree's (git misses some)."""
    done = _run(worktree, ("status", "--porcelain", "-z", "--ignored", "--untracked-files=all"))
    if done.returncode != 0:
        return [_failure(("status",), done)]
    left = [f"{code} {shown(path)}" for code, path in _status_entries(done.stdout)
            if (tracked if code not in ("??", "!!") else not is_kept(path, keep, is_dir=path.endswith("/")))]
    found = scan_worktree(worktree, max_file_bytes=sys.maxsize, keep=keep, limit=_REPORTED * 2)
    return left + [str(finding) for finding in found if finding.kind in _LEFTOVER_KINDS]


def _status_entries(out: str) -> list[tuple[str, str]]:
    """(XY code, path) from `git status --porcelain -z`; a rename's second (original) path is skipped."""
    fields = out.split("\0")
    entries: list[tuple[str, str]] = []
    i = 0
    while i < len(fields) and fields[i]:
        code, path = fields[i][:2], fields[i][3:]
        entries.append((code, path))
        i += 2 if "R" in code or "C" in code else 1
    return entries


def _make_removable(worktree: Path, keep: Sequence[str]) -> None:
    """u+rwx on directories and u+rw on files, top-down so locked directories open up before listing.

    Owner bits only, added and never removed; symlinks and special files are never touched (so
    nothing outside is reached through a link), nor are the `keep` caches. A chmod that fails (a
    file someone else owns) is not an error here: the retry's leftover check reports what stays.
    """
    _open_root(worktree)
    for entry in walk(worktree, keep, descend_git=True):
        if entry.error is None:
            _loosen(worktree / entry.rel, entry.mode)


def _loosen(path: Path, mode: int) -> None:
    want = stat.S_IRWXU if stat.S_ISDIR(mode) else stat.S_IRUSR | stat.S_IWUSR if stat.S_ISREG(mode) else 0
    if want and mode & want != want:
        try:
            os.chmod(path, stat.S_IMODE(mode) | want)
        except OSError as exc:
            log.info("%s: could not make it removable: %s", shown(str(path)), exc.strerror)


def _restore_modes(worktree: Path) -> None:
    """Tracked files and their directories back to the modes a checkout gives them.

    git records only the executable bit, so a tracked file the agent made 000 (or setuid, or
    world-writable) would otherwise survive `reset --hard` unseen and break a later gate.
    """
    done = _run(worktree, ("ls-files", "-s", "-z"))
    if done.returncode != 0:
        return  # the leftover check just passed, so the index is readable; nothing to fix from here
    mask = _umask()
    folders: set[str] = set()
    for record in done.stdout.split("\0"):
        meta, _, path = record.partition("\t")
        mode = meta.split(" ", 1)[0]
        if mode in ("100644", "100755"):
            _set_mode(worktree / path, (0o777 if mode == "100755" else 0o666) & ~mask, stat.S_ISREG)
            parent = path.rpartition("/")[0]
            while parent and parent not in folders:
                folders.add(parent)
                parent = parent.rpartition("/")[0]
    for folder in (*folders, ""):  # "" is the root, which the agent may have locked too
        _set_mode(worktree / folder, 0o777 & ~mask, stat.S_ISDIR)


def _set_mode(path: Path, wanted: int, is_kind: Callable[[int], bool]) -> None:
    try:
        info = path.lstat()
        if is_kind(info.st_mode) and stat.S_IMODE(info.st_mode) != wanted:
            os.chmod(path, wanted)
    except OSError as exc:
        log.info("%s: mode not restored: %s", shown(str(path)), exc.strerror)


def _umask() -> int:
    # Read, not set: os.umask() can only be read by changing it, which races with other threads.
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
        return next(int(line.split()[1], 8) for line in lines if line.startswith("Umask:"))
    except (OSError, ValueError, IndexError, StopIteration):
        return 0o022  # not Linux (or a kernel before 4.7): the usual default


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


def changed_paths(worktree: Path, base: str, head: str = "HEAD") -> tuple[str, ...]:
    """Every path that differs between two commits, caches and logs included: what review and the
    hallucination checks must see (a `dist/` module is imported and run like any other)."""
    out = git(worktree, "diff", "--name-only", "-z", "--no-renames", base, head)
    return tuple(path for path in out.split("\0") if path)


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
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        for args in (("read-tree", base), ("add", "-A")):
            done = _run(worktree, args, env=env)
            if done.returncode != 0:
                raise WorkspaceError(_failure(args, done))
        return _run(worktree, ("diff", "--cached", "--no-color", base), env=env, errors="replace").stdout


def show_file(worktree: Path, commit: str, path: str) -> str | None:
    done = _run(worktree, ("show", f"{commit}:{path}"), errors="replace")
    return done.stdout if done.returncode == 0 else None
