"""The file tools of the built-in agent: read, list, search, write, patch. In-process, no shell.

Every function takes the worktree root and a relative path, resolves it with `resolve_inside` (which
raises `PathRefused`) and raises `ToolFailure` with a message meant for the model when the request
cannot be served. Search is a plain Python walk with `re`: no grep binary, no shell quoting.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from fnmatch import fnmatch
from pathlib import Path

from onloop.agent.paths import relative_to_root, resolve_inside

MAX_SEARCH_FILE_BYTES = 2_000_000
_SKIP_DIRS = {".git", "node_modules", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


class ToolFailure(Exception):
    """The tool could not do what was asked; the message goes back to the model as the tool's result."""


def _is_binary(data: bytes) -> bool:
    return b"\x00" in data[:8192]


def read_file(root: Path, raw: str, start_line: int = 1, max_lines: int | None = None) -> str:
    path = resolve_inside(root, raw)
    if not path.is_file():
        raise ToolFailure(f"{raw}: no such file" if not path.exists() else f"{raw}: not a file")
    data = path.read_bytes()
    if _is_binary(data):
        raise ToolFailure(f"{raw}: binary file ({len(data)} bytes), not shown")
    lines = data.decode("utf-8", "replace").splitlines(keepends=True)
    end = len(lines) if max_lines is None else start_line - 1 + max_lines
    return "".join(lines[start_line - 1 : end])


def list_dir(root: Path, raw: str = ".", limit: int = 1000) -> str:
    path = resolve_inside(root, raw)
    if not path.is_dir():
        raise ToolFailure(f"{raw}: not a directory")
    names = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in os.scandir(path)
                   if entry.name != ".git")
    shown = names[:limit]
    more = f"\n... and {len(names) - limit} more" if len(names) > limit else ""
    return "\n".join(shown) + more if shown else "(empty directory)"


def search(root: Path, pattern: str, raw: str = ".", glob: str | None = None, max_results: int = 100) -> str:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ToolFailure(f"invalid regular expression {pattern!r}: {exc}") from exc
    base = resolve_inside(root, raw)
    hits: list[str] = []
    for file in _walk(base):
        if glob and not fnmatch(file.name, glob) and not fnmatch(relative_to_root(root, file), glob):
            continue
        hits.extend(_search_file(root, file, regex, max_results - len(hits)))
        if len(hits) >= max_results:
            hits.append(f"(stopped at {max_results} matches)")
            break
    return "\n".join(hits) if hits else "no matches"


def _walk(base: Path) -> Iterator[Path]:
    if base.is_file():
        yield base
        return
    for directory, dirs, files in os.walk(base):  # does not follow symlinked directories
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            path = Path(directory) / name
            if not path.is_symlink():
                yield path


def _search_file(root: Path, file: Path, regex: re.Pattern[str], room: int) -> Sequence[str]:
    try:
        if file.stat().st_size > MAX_SEARCH_FILE_BYTES:
            return []
        data = file.read_bytes()
    except OSError:
        return []  # unreadable (permissions, vanished): not a match, nothing the model can act on
    if _is_binary(data):
        return []
    rel = relative_to_root(root, file)
    hits: list[str] = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        if regex.search(line):
            hits.append(f"{rel}:{number}: {line[:300]}")
            if len(hits) >= room:
                break
    return hits


def write_file(root: Path, raw: str, content: str) -> str:
    path = resolve_inside(root, raw)
    if path.is_dir():
        raise ToolFailure(f"{raw}: is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return f"wrote {len(content.encode())} bytes to {raw}"


def apply_edits(root: Path, raw: str, edits: Sequence[tuple[str, str]]) -> str:
    """Search/replace edits, all or nothing; each search text must occur exactly once when applied."""
    path = resolve_inside(root, raw)
    if not path.is_file():
        raise ToolFailure(f"{raw}: no such file (use write_file to create one)")
    text = path.read_text(encoding="utf-8")
    for number, (old, new) in enumerate(edits, start=1):
        count = text.count(old)
        if count != 1:
            where = "not found" if count == 0 else f"found {count} times; add context to make it unique"
            raise ToolFailure(f"edit {number}: search text {where}; no edit was applied")
        text = text.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")
    return f"applied {len(edits)} edit(s) to {raw}"
