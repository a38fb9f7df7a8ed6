"""Taking a worktree back from the agent: rollback, reset_to and clean_untracked on hostile trees.

Real git, real files: every oddity an agent can leave (nested repositories, fifos, sockets, devices,
sparse 100 GB files, names that are not UTF-8, permission changes, unreadable files) must end with the
worktree exactly at the target commit and the configured caches still there, never with an exception
escaping. The unreadable cases only mean something for a user without CAP_DAC_OVERRIDE, so they run
in a forked child that drops to uid/gid 65534 with no groups (`as_nobody`); the tree they work on is
created by that user in a directory it owns. (setpriv is not used to exec a fresh interpreter because
the venv's interpreter lives under /root, which uid 65534 cannot traverse; the forked child drops the
same ids setpriv would, with the same interpreter.)
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from onloop.errors import WorkspaceError
from onloop.workspace import (
    checkpoint,
    clean_untracked,
    create_worktree,
    head_commit,
    numstat,
    reset_to,
    rollback,
    show_file,
    tag,
    working_diff,
)

RUN = "r1"
KEEP = (".venv/", "**/node_modules/")
NOBODY = 65534
BIG = 100 * 1024**3  # a 100 GB apparent size: costs nothing on disk, would take git minutes to hash
BASE_FILES = {"a.txt": "hello\n", "src/mod.py": "x = 1\n", ".gitignore": "*.log\n.venv/\nnode_modules/\n"}


def run_git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True, errors="surrogateescape").stdout


def make_worktree(root: Path) -> tuple[Path, str]:
    """A repository under `root` and a run worktree made the way onloop makes it, with caches in it."""
    repo = root / "repo"
    repo.mkdir()
    run_git(repo, "init", "-q", "-b", "main")
    for rel, text in BASE_FILES.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "base")
    worktree = root / "wt"
    create_worktree(repo, RUN, "main", worktree)
    (worktree / ".venv" / "lib").mkdir(parents=True)
    (worktree / ".venv" / "lib" / "site.py").write_text("cached = True\n")
    (worktree / "web" / "node_modules" / "pkg").mkdir(parents=True)
    (worktree / "web" / "node_modules" / "pkg" / "index.js").write_text("module.exports = 1\n")
    return worktree, head_commit(worktree)


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry below `root` but its `.git`: type, permission bits, content (or link target, or size)."""
    found: dict[str, tuple[Any, ...]] = {".": ("dir", oct(stat.S_IMODE(root.lstat().st_mode)))}
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(root / rel_dir if rel_dir else root) as it:
            for entry in it:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if rel == ".git":
                    continue
                info = entry.stat(follow_symlinks=False)
                mode = oct(stat.S_IMODE(info.st_mode))
                if stat.S_ISDIR(info.st_mode):
                    found[rel] = ("dir", mode)
                    stack.append(rel)
                elif stat.S_ISLNK(info.st_mode):
                    found[rel] = ("link", os.readlink(entry.path))
                elif stat.S_ISREG(info.st_mode) and info.st_size <= 1_000_000:
                    found[rel] = ("file", mode, Path(entry.path).read_bytes())
                else:
                    found[rel] = (stat.filemode(info.st_mode), info.st_size)
    return found


def status(worktree: Path) -> list[str]:
    """`git status --porcelain --ignored --untracked-files=all`, the kept caches left out."""
    out = run_git(worktree, "status", "--porcelain", "-z", "--ignored", "--untracked-files=all")
    return [e for e in out.split("\0") if e and not e[3:].startswith((".venv/", "web/node_modules/"))]


# -- the oddities --------------------------------------------------------------------------------------


def nested_empty_repo(wt: Path) -> None:
    run_git(wt, "init", "-q", "vendor")


def nested_repo_with_commit(wt: Path) -> None:
    inner = wt / "inner"
    inner.mkdir()
    run_git(inner, "init", "-q")
    (inner / "lib.py").write_text("y = 2\n")
    run_git(inner, "add", "-A")
    run_git(inner, "commit", "-qm", "inner")


def git_file_below_root(wt: Path) -> None:
    (wt / "pkg").mkdir()
    (wt / "pkg" / ".git").write_text("gitdir: /nonexistent\n")
    (wt / "pkg" / "hidden.py").write_text("z = 3\n")


def repo_in_tracked_dir(wt: Path) -> None:
    run_git(wt, "init", "-q", "src")  # git clean never sees src/.git: src is tracked


def fifo(wt: Path) -> None:
    os.mkfifo(wt / "pipe")


def unix_socket(wt: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(wt / "sock"))
    sock.close()


def char_device(wt: Path) -> None:
    os.mknod(wt / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))


def sparse_new_file(wt: Path) -> None:
    with open(wt / "huge.bin", "wb") as file:
        file.truncate(BIG)


def sparse_tracked_file(wt: Path) -> None:
    os.truncate(wt / "a.txt", BIG)


def odd_names(wt: Path) -> None:
    for name in ("new\nline.txt", "tab\there.txt", "zero\u200bwidth.txt", "evil\u202etxt.py", "trailing.txt ",
                 " leading.txt", "bad\udcff.txt", "bell\x07.txt"):
        (wt / name).write_text("odd\n")


def git_refused_names(wt: Path) -> None:
    (wt / ".GIT").mkdir()
    (wt / ".GIT" / "config").write_text("[core]\n")
    (wt / "git~1").write_text("x\n")
    (wt / ".gitmodules").symlink_to("a.txt")


def permission_changes(wt: Path) -> None:
    os.chmod(wt / "a.txt", 0o4777)
    os.chmod(wt / "src" / "mod.py", 0)
    os.chmod(wt / "src", 0o700)


def ignored_files(wt: Path) -> None:
    (wt / "build.log").write_text("ignored\n")
    (wt / "src" / "deep.log").write_text("ignored\n")


def tracked_edits(wt: Path) -> None:
    (wt / "a.txt").write_text("changed\n")
    (wt / "src" / "mod.py").unlink()
    (wt / "new.py").write_text("new\n")


ODDITIES: dict[str, Callable[[Path], None]] = {f.__name__: f for f in (
    nested_empty_repo, nested_repo_with_commit, git_file_below_root, repo_in_tracked_dir, fifo, unix_socket,
    char_device, sparse_new_file, sparse_tracked_file, odd_names, git_refused_names, permission_changes,
    ignored_files, tracked_edits,
)}
UNTRACKED_ONLY = [name for name in ODDITIES if name not in
                  ("sparse_tracked_file", "permission_changes", "tracked_edits")]


def everything(wt: Path) -> None:
    for make in ODDITIES.values():
        make(wt)


@pytest.fixture
def wt(tmp_path: Path) -> tuple[Path, str]:
    return make_worktree(tmp_path)


def _skip_without_root(name: str) -> None:
    if name == "char_device" and os.geteuid() != 0:
        pytest.skip("creating a device node needs root")


# -- rollback, reset_to, clean_untracked: the worktree ends exactly at the target ----------------------


@pytest.mark.parametrize("oddity", [*ODDITIES, "everything"])
def test_rollback_restores_the_target_whatever_was_left(wt: tuple[Path, str], oddity: str) -> None:
    _skip_without_root(oddity)
    worktree, base = wt
    before = tree(worktree)
    (everything if oddity == "everything" else ODDITIES[oddity])(worktree)

    started = time.monotonic()
    kept = rollback(worktree, RUN, 1, base, "onloop: iteration 1 rolled back", keep=KEEP)

    assert time.monotonic() - started < 30, "nothing may be hashed or read in full"
    assert tree(worktree) == before
    assert status(worktree) == []
    assert head_commit(worktree) == base
    if kept is not None:
        assert run_git(worktree, "rev-parse", f"refs/onloop/{RUN}/rejected/1").strip() == kept


@pytest.mark.parametrize("oddity", [*ODDITIES, "everything"])
def test_reset_to_restores_the_target_whatever_was_left(wt: tuple[Path, str], oddity: str) -> None:
    _skip_without_root(oddity)
    worktree, base = wt
    before = tree(worktree)
    (everything if oddity == "everything" else ODDITIES[oddity])(worktree)

    reset_to(worktree, RUN, base, keep=KEEP)

    assert tree(worktree) == before
    assert status(worktree) == []
    assert run_git(worktree, "for-each-ref", "refs/onloop/") == ""


@pytest.mark.parametrize("oddity", UNTRACKED_ONLY)
def test_clean_untracked_removes_everything_but_the_caches(wt: tuple[Path, str], oddity: str) -> None:
    _skip_without_root(oddity)
    worktree, base = wt
    (worktree / "a.txt").write_text("work of this iteration\n")
    sha = checkpoint(worktree, "onloop: iteration 1")
    after_checkpoint = tree(worktree)
    ODDITIES[oddity](worktree)

    clean_untracked(worktree, RUN, keep=KEEP)

    assert tree(worktree) == after_checkpoint
    assert status(worktree) == []
    assert head_commit(worktree) == sha != base


def test_clean_untracked_leaves_tracked_changes_alone(wt: tuple[Path, str]) -> None:
    worktree, _ = wt
    (worktree / "a.txt").write_text("not yet committed\n")
    (worktree / "build.log").write_text("ignored\n")

    clean_untracked(worktree, RUN, keep=KEEP)

    assert (worktree / "a.txt").read_text() == "not yet committed\n"
    assert not (worktree / "build.log").exists()
    assert (worktree / ".venv" / "lib" / "site.py").exists()


def test_ignored_files_do_not_survive_an_iteration_without_keep(wt: tuple[Path, str]) -> None:
    worktree, _ = wt
    clean_untracked(worktree, RUN)
    assert not (worktree / ".venv").exists() and not (worktree / "web").exists()


def test_keep_globs_are_anchored_and_match_untracked_files_too(wt: tuple[Path, str]) -> None:
    worktree, base = wt
    for rel in ("scratch/keep.txt", "scratch/drop.txt", "sub/scratch/keep.txt", "web/node_modules/x/.bin/t"):
        (worktree / rel).parent.mkdir(parents=True, exist_ok=True)
        (worktree / rel).write_text("x\n")

    reset_to(worktree, RUN, base, keep=(*KEEP, "scratch/keep.txt"))

    assert (worktree / "scratch" / "keep.txt").exists()
    assert not (worktree / "scratch" / "drop.txt").exists()
    assert not (worktree / "sub").exists(), "a keep glob is anchored at the root, as glob_match is"
    assert (worktree / "web" / "node_modules" / "x" / ".bin" / "t").exists()


# -- what rollback keeps -------------------------------------------------------------------------------


def test_rollback_keeps_the_work_and_notes_what_it_removed(wt: tuple[Path, str]) -> None:
    worktree, base = wt
    nested_repo_with_commit(worktree)
    nested_empty_repo(worktree)
    fifo(worktree)
    sparse_new_file(worktree)
    odd_names(worktree)
    tracked_edits(worktree)

    kept = rollback(worktree, RUN, 3, base, "onloop: iteration 3 rolled back (policy breach)", keep=KEEP)

    assert kept is not None
    files = run_git(worktree, "ls-tree", "-r", "-z", "--name-only", kept).split("\0")
    # A nested repository's content is kept as plain files; what git cannot record is not.
    assert {"inner/lib.py", "new.py", "new\nline.txt", "bad\udcff.txt", "trailing.txt "} <= set(files)
    assert not {"pipe", "huge.bin", "src/mod.py"} & set(files)
    message = run_git(worktree, "log", "-1", "--format=%B", kept)
    assert message.startswith("onloop: iteration 3 rolled back (policy breach)\n")
    for note in ("removed pipe (a fifo)", "removed inner/.git (a nested repository)",
                 "removed vendor/.git (a nested repository)", "removed huge.bin (a file of 107,374,182,400 bytes"):
        assert note in message
    assert run_git(worktree, "show", f"{kept}:a.txt") == "changed\n"


def test_rollback_with_nothing_to_keep_returns_none(wt: tuple[Path, str]) -> None:
    worktree, base = wt
    fifo(worktree)
    assert rollback(worktree, RUN, 1, base, "rolled back", keep=KEEP) is None
    assert not (worktree / "pipe").exists()


def test_rollback_keeps_the_agents_own_commits(wt: tuple[Path, str]) -> None:
    worktree, base = wt
    (worktree / "a.txt").write_text("committed by the agent\n")
    run_git(worktree, "commit", "-qam", "agent commit")

    kept = rollback(worktree, RUN, 2, base, "rolled back", keep=KEEP)

    assert kept is not None and head_commit(worktree) == base
    assert run_git(worktree, "show", f"{kept}:a.txt") == "committed by the agent\n"


def test_a_tracked_large_file_of_unchanged_size_is_kept(tmp_path: Path) -> None:
    worktree, base = make_worktree(tmp_path)
    (worktree / "data.bin").write_bytes(b"\1" * 3000)
    base = checkpoint(worktree, "a big tracked file")
    (worktree / "a.txt").write_text("changed\n")

    kept = rollback(worktree, RUN, 1, base, "rolled back", keep=KEEP, max_file_bytes=1000)

    assert kept is not None
    assert "data.bin" in run_git(worktree, "ls-tree", "-r", "--name-only", kept).split()


# -- safety: never outside a run's worktree, never the operator's hooks ---------------------------------


def test_never_resets_or_cleans_outside_a_run_worktree(wt: tuple[Path, str]) -> None:
    worktree, base = wt
    repo = worktree.parent / "repo"
    (repo / "operator.txt").write_text("mine\n")
    for call in (lambda: rollback(repo, RUN, 1, base, "x"), lambda: reset_to(repo, RUN, base),
                 lambda: clean_untracked(repo, RUN)):
        with pytest.raises(WorkspaceError, match="refusing"):
            call()
    assert (repo / "operator.txt").read_text() == "mine\n"


def test_the_operators_hooks_never_run(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    run_git(repo, "init", "-q", "-b", "main")
    (repo / "a.txt").write_text("a\n")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "base")
    marker = tmp_path / "hook-ran"
    hooks = tmp_path / "hooks"
    for folder in (repo / ".git" / "hooks", hooks):
        folder.mkdir(exist_ok=True)
        for name in ("pre-commit", "commit-msg", "post-commit", "post-checkout", "reference-transaction"):
            hook = folder / name
            hook.write_text(f"#!/bin/sh\necho {name} >> {marker}\n")
            hook.chmod(0o755)
    worktree = tmp_path / "wt"
    create_worktree(repo, RUN, "main", worktree)
    base = head_commit(worktree)
    (worktree / "b.txt").write_text("b\n")
    tag(worktree, "onloop/r1/green/1", checkpoint(worktree, "one"))
    (worktree / "c.txt").write_text("c\n")
    rollback(worktree, RUN, 2, base, "rolled back")
    reset_to(worktree, RUN, base)
    clean_untracked(worktree, RUN)
    assert not marker.exists(), marker.read_text()

    run_git(repo, "config", "core.hooksPath", str(hooks))
    (worktree / "d.txt").write_text("d\n")
    checkpoint(worktree, "with hooksPath configured")
    assert not marker.exists(), marker.read_text()

    run_git(worktree, "commit", "-q", "--allow-empty", "-m", "plain git runs them")  # the control
    assert "pre-commit" in marker.read_text()


# -- names and diffs -------------------------------------------------------------------------------------


def test_names_that_are_not_utf8_or_hold_newlines_round_trip(wt: tuple[Path, str]) -> None:
    worktree, base = wt
    odd_names(worktree)
    sha = checkpoint(worktree, "odd names")

    paths = {path for path, _, _ in numstat(worktree, base, sha)}

    assert {"new\nline.txt", "bad\udcff.txt", "trailing.txt ", " leading.txt"} <= paths
    assert show_file(worktree, sha, "bad\udcff.txt") == "odd\n"


def test_show_file_of_binary_content_does_not_raise(wt: tuple[Path, str]) -> None:
    worktree, _ = wt
    (worktree / "blob.bin").write_bytes(b"\xff\xfe\x00 not text")
    sha = checkpoint(worktree, "binary")
    assert show_file(worktree, sha, "blob.bin") is not None


def test_working_diff_failure_is_a_workspace_error(wt: tuple[Path, str]) -> None:
    worktree, base = wt
    nested_empty_repo(worktree)
    with pytest.raises(WorkspaceError, match="add -A"):
        working_diff(worktree, base)


# -- unreadable trees, as a user without CAP_DAC_OVERRIDE ---------------------------------------------


@dataclass(frozen=True)
class Outcome:
    before: dict[str, tuple[Any, ...]]
    after: dict[str, tuple[Any, ...]]
    status: list[str]
    kept: str | None
    error: str | None = None


def as_nobody(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` in a forked child running as uid/gid 65534 without groups; its result, pickled back."""
    if os.geteuid() != 0:
        pytest.skip("dropping to an unprivileged user needs root (and unprivileged, these cases run as is)")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read_end)
        try:
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            os.environ.update(GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1", HOME="/nonexistent")
            result: tuple[str, Any] = ("ok", fn(*args))
        except BaseException:
            result = ("error", traceback.format_exc())
        with os.fdopen(write_end, "wb") as out:
            pickle.dump(result, out)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as inp:
        data = inp.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    if kind == "error":
        pytest.fail(f"the unprivileged child failed:\n{value}")
    return value


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A directory owned by uid 65534 outside pytest's tmp dirs (those are root's, mode 0700)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to hand a directory to uid 65534")
    path = Path(tempfile.mkdtemp(prefix="onloop-nobody-"))
    os.chown(path, NOBODY, NOBODY)
    yield path
    shutil.rmtree(path)  # root: permissions do not stop it


def lock_things(wt: Path) -> None:
    """What an unprivileged agent can do to make its tree unreadable, tracked and untracked."""
    (wt / "secret.txt").write_text("x\n")
    os.chmod(wt / "secret.txt", 0)
    (wt / "locked" / "inner").mkdir(parents=True)
    (wt / "locked" / "inner" / "f.txt").write_text("x\n")
    os.chmod(wt / "locked" / "inner", 0)
    os.chmod(wt / "locked", 0)
    (wt / "listable").mkdir()
    (wt / "listable" / "g.txt").write_text("x\n")
    os.chmod(wt / "listable", 0o400)  # r without x: names can be listed, nothing can be reached
    os.chmod(wt / "a.txt", 0)
    os.chmod(wt / "src", 0)  # a tracked directory
    os.chmod(wt, 0)  # and the worktree itself: not even git can start in it


def unprivileged_restore(root: Path, operation: str) -> Outcome:
    worktree, base = make_worktree(root)
    if operation == "clean_untracked":
        base = checkpoint(worktree, "iteration")
    before = tree(worktree)
    lock_things(worktree)
    kept = None
    if operation == "rollback":
        kept = rollback(worktree, RUN, 1, base, "rolled back", keep=KEEP)
    elif operation == "reset_to":
        reset_to(worktree, RUN, base, keep=KEEP)
    else:
        os.chmod(worktree, 0o755)  # clean_untracked leaves tracked files alone (it opens a locked root
        os.chmod(worktree / "a.txt", 0o644)  # to u+rwx, but restores no mode)
        os.chmod(worktree / "src", 0o755)
        clean_untracked(worktree, RUN, keep=KEEP)
    return Outcome(before, tree(worktree), status(worktree), kept)


@pytest.mark.parametrize("operation", ["rollback", "reset_to", "clean_untracked"])
def test_unreadable_trees_are_restored_as_an_unprivileged_user(nobody_dir: Path, operation: str) -> None:
    outcome: Outcome = as_nobody(unprivileged_restore, nobody_dir, operation)

    assert outcome.after == outcome.before
    assert outcome.status == []
    # git cannot read an unreadable file, so keeping the work fails: skipped, not raised.
    assert outcome.kept is None


def unprivileged_leftover(root: Path) -> str:
    worktree, base = Path(root / "wt"), head_commit(root / "wt")
    try:
        reset_to(worktree, RUN, base, keep=KEEP)
    except WorkspaceError as exc:
        return str(exc)
    return "no error"


def test_what_cannot_be_removed_is_a_workspace_error_that_names_it(nobody_dir: Path) -> None:
    as_nobody(make_worktree, nobody_dir)
    foreign = nobody_dir / "wt" / "rootowned"
    foreign.mkdir()  # made by root, so uid 65534 can neither delete in it nor chmod it
    (foreign / "file.txt").write_text("x\n")

    message = as_nobody(unprivileged_leftover, nobody_dir)

    assert message.startswith("could not restore") and "rootowned/file.txt" in message
