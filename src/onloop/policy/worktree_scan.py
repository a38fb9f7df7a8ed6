"""The worktree scan: what an agent left in its worktree that git, the audit or a cleanup would choke on.

The diff audit sees a worktree through `git add -A`, and some trees make that command fail or hang
before the audit sees anything: an empty nested repository, a name git refuses (`.GIT`, `git~1`),
an unreadable directory, a 100 GB sparse file that git would hash in full. Other things git never
sees at all and so never cleans: fifos, sockets and device nodes, a `.git` directory inside a tracked
directory. This scan looks at the tree itself, before git does, and turns each of these into a
`Finding` (severity "block"), so that what an agent did to its worktree ends in an incident and a
rollback rather than in an exception.

It is cheap and safe on a hostile tree because it only ever calls `lstat`, `scandir` and `access`:
it never follows a symlink, never opens a file, never reads content, and turns every error it meets
(a directory it may not list, a file that vanished) into a finding or a skip, never an exception.
Kinds:

- special_file       a fifo, socket, block or character device (git skips them, `git clean` leaves them)
- nested_repository  a `.git` entry (directory, file or link) anywhere below the root
- odd_name           control, format (zero-width, bidi) or separator characters, bytes that are not
                     valid UTF-8, leading or trailing whitespace, or a name git refuses to record
- oversized          a regular file whose apparent size (st_size) is above the cap
- unreadable         a file the current user cannot read, a directory it cannot list or traverse

`walk` is the walker underneath, shared with `onloop.workspace`, which uses it to remove what git
cannot record before keeping rejected work and to make a tree removable when a cleanup fails.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from onloop.policy.audit import Finding
from onloop.policy.model import glob_match

SPECIAL_TYPES = {
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFBLK: "block device",
    stat.S_IFCHR: "character device",
}
# Categories that make a name unsafe to show or parse; unassigned and private-use characters and
# spaces inside a name are left alone (they are merely unusual, and Unicode versions differ).
_BAD_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "a format character (zero-width or bidi)",
    "Cs": "bytes that are not valid UTF-8",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
_ACCESS_KW = {"effective_ids": True} if os.access in os.supports_effective_ids else {}
_SUSPECT_FIRST = frozenset(".gG")  # the first letters of the names git refuses (.git, git~1, .gitmodules)
_DIR_BITS = stat.S_IRUSR | stat.S_IXUSR


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry below the worktree, as lstat saw it.

    `rel` is the real relative POSIX path (undecodable bytes kept as surrogate escapes, so it can be
    passed back to the OS); use `shown(rel)` for anything a person or a database will read. An entry
    with `error` set is a directory the walk could not list (it was yielded once before without one).
    """

    rel: str
    mode: int
    size: int
    readable: bool
    error: str | None = None

    @property
    def name(self) -> str:
        return self.rel.rpartition("/")[2]

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_git_entry(self) -> bool:
        """A `.git` entry below the root: a nested repository (or the pointer to one)."""
        return self.name == ".git"


def scan_worktree(worktree: Path, *, max_file_bytes: int, keep: Sequence[str] = (), limit: int = 200) -> list[Finding]:
    """Everything in `worktree` that git, the audit or a cleanup would choke on, at most `limit` findings.

    `keep` are the configured cache globs (`policy.caches`, matched with `glob_match`; a glob ending
    in "/" matches only a directory, and with it everything under it): they are not scanned.
    """
    limit = max(limit, 1)
    findings: list[Finding] = []
    for entry in walk(worktree, keep):
        for finding in entry_findings(entry, max_file_bytes):
            if len(findings) == limit:
                return _truncated(findings)
            findings.append(finding)
    return findings


def _truncated(findings: list[Finding]) -> list[Finding]:
    last = findings[-1]
    note = f" (scan stopped after {len(findings)} findings; the tree holds more)"
    return [*findings[:-1], replace(last, evidence=last.evidence + note)]


def entry_findings(entry: Entry, max_file_bytes: int) -> list[Finding]:
    """The findings for one entry of `walk`."""
    if entry.error is not None:
        return [Finding("unreadable", shown(entry.rel), f"directory cannot be listed: {entry.error}")]
    if entry.is_git_entry:
        what = "directory" if entry.is_dir else "file" if stat.S_ISREG(entry.mode) else "entry"
        return [Finding("nested_repository", shown(entry.rel), f"a .git {what} below the worktree root: a nested "
                        "repository (git cannot record it, and an empty one makes `git add` fail)")]
    found: list[tuple[str, str]] = []
    problems = name_problems(entry.name, symlink=stat.S_ISLNK(entry.mode))
    if problems:
        found.append(("odd_name", f"name {entry.name!r} has {', '.join(problems)}"))
    kind = SPECIAL_TYPES.get(stat.S_IFMT(entry.mode))
    if kind is not None:
        found.append(("special_file", f"a {kind}: git cannot record it and no cleanup removes it"))
    elif stat.S_ISREG(entry.mode) and entry.size > max_file_bytes:
        found.append(("oversized", f"apparent size {entry.size:,} bytes, above the {max_file_bytes:,}-byte cap "
                      "(not read)"))
    if not entry.readable:
        what = "directory cannot be listed or traversed" if entry.is_dir else "file cannot be read"
        found.append(("unreadable", f"{what} by the current user (mode {stat.filemode(entry.mode)})"))
    # The display path is built only for the rare entry that has a finding: this runs on every file.
    return [Finding(kind, shown(entry.rel), evidence) for kind, evidence in found]


def walk(worktree: Path, keep: Sequence[str] = (), *, descend_git: bool = False) -> Iterator[Entry]:
    """Every entry below `worktree`, top-down and sorted, by lstat only; never raises.

    Skips the root's own `.git` and whatever matches `keep`, and never descends into a symlink, a
    directory the user cannot traverse or (unless `descend_git`) a nested `.git` directory. Whether
    to descend into a directory is decided after its entry was yielded, so a caller that makes a
    directory traversable (chmod) while walking gets its content too; one that vanished is skipped.
    """
    root, euid = os.fspath(worktree), os.geteuid()
    listing, error = _list(root)
    if error is not None:
        yield Entry(".", 0, 0, False, error)
    stack = [("", listing)]
    while stack:
        rel_dir, entries = stack.pop()
        below: list[tuple[str, list[os.DirEntry[str]]]] = []
        for dir_entry in entries:
            if not rel_dir and dir_entry.name == ".git":
                continue
            entry = _entry(rel_dir, dir_entry, keep, euid)
            if entry is None:
                continue
            yield entry
            descend = entry.is_dir and (descend_git or not entry.is_git_entry)
            if descend and (entry.readable or _traversable(dir_entry.path)):
                listing, error = _list(dir_entry.path)
                if error is not None:
                    yield replace(entry, readable=False, error=error)
                below.append((entry.rel, listing))
        stack.extend(reversed(below))


def _entry(rel_dir: str, dir_entry: os.DirEntry[str], keep: Sequence[str], euid: int) -> Entry | None:
    rel = f"{rel_dir}/{dir_entry.name}" if rel_dir else dir_entry.name
    try:
        info = dir_entry.stat(follow_symlinks=False)
    except OSError:
        return None  # vanished between listing and lstat: nothing left to report
    mode = info.st_mode
    if keep and _matches(rel, keep, is_dir=stat.S_ISDIR(mode)):
        return None
    if stat.S_ISDIR(mode):
        readable = _owner_may(info, euid, _DIR_BITS) or _traversable(dir_entry.path)
    elif stat.S_ISREG(mode):
        readable = _owner_may(info, euid, stat.S_IRUSR) or os.access(dir_entry.path, os.R_OK, **_ACCESS_KW)
    else:
        readable = True  # links and special files are never opened, so their permissions do not matter
    return Entry(rel, mode, info.st_size, readable)


def _owner_may(info: os.stat_result, euid: int, bits: int) -> bool:
    # For the owner the owner bits decide (an ACL cannot narrow them), so the common case needs no
    # access() call; anything else (other owners, ACLs, root) asks the kernel.
    return info.st_uid == euid and info.st_mode & bits == bits


def _traversable(path: str) -> bool:
    return os.access(path, os.R_OK | os.X_OK, **_ACCESS_KW)


def _list(path: str) -> tuple[list[os.DirEntry[str]], str | None]:
    """A directory's entries sorted by name, or the reason it cannot be listed (None if it vanished)."""
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name), None
    except FileNotFoundError:
        return [], None
    except OSError as exc:
        return [], exc.strerror or type(exc).__name__


def is_kept(rel: str, keep: Sequence[str], *, is_dir: bool) -> bool:
    """Whether `rel` (or a directory above it) matches a keep glob; "x/" globs match directories only."""
    parts = rel.strip("/").split("/")
    return any(_matches("/".join(parts[:depth]), keep, is_dir=is_dir or depth < len(parts))
               for depth in range(1, len(parts) + 1))


def _matches(rel: str, keep: Sequence[str], *, is_dir: bool) -> bool:
    return any((is_dir or not pattern.endswith("/")) and glob_match(pattern, rel) for pattern in keep)


def name_problems(name: str, *, symlink: bool = False) -> list[str]:
    """What is wrong with one path segment, in words; empty when nothing is."""
    if name.isprintable() and name[:1] not in _SUSPECT_FIRST and name == name.strip():
        return []  # the fast path, taken by nearly every name
    problems: list[str] = []
    if not name.isprintable():
        categories = {unicodedata.category(char) for char in name}
        problems += [words for category, words in _BAD_CATEGORIES.items() if category in categories]
    if name != name.strip():
        problems.append("leading or trailing whitespace")
    if git_refuses(name, symlink=symlink):
        problems.append("a name git refuses to record (.git under another spelling, or a .gitmodules symlink)")
    return problems


def git_refuses(name: str, *, symlink: bool = False) -> bool:
    """Whether `git add` fails on a path with this segment (`.GIT`, `git~1`, `.git.`, a .gitmodules link).

    `.git` itself is not counted here: below the root it is a nested repository, its own finding.
    """
    if name[:1] not in _SUSPECT_FIRST or name == ".git":
        return False
    return _aliases(name, (".git", "git~1")) or (symlink and _aliases(name, (".gitmodules", "gitmod~")))


def _aliases(name: str, stems: tuple[str, ...]) -> bool:
    # git's own test (is_ntfs_dotgit and friends in read-cache.c): the stem, case-insensitively, then
    # only dots and spaces up to the end, a backslash or an NTFS stream separator (":").
    lower = name.lower()
    for stem in stems:
        if lower.startswith(stem):
            rest = lower[len(stem):]
            if stem.endswith("~"):
                rest = rest.lstrip("0123456789") if rest[:1].isdigit() else "x"
            rest = rest.lstrip(". ")
            if not rest or rest[0] in "\\:":
                return True
    return False


def shown(rel: str) -> str:
    """`rel` as it is safe to print or store: as is when plain, else its repr (escapes, quotes)."""
    plain = rel.isprintable() and all(part == part.strip() for part in rel.split("/"))
    return rel if plain else repr(rel)
