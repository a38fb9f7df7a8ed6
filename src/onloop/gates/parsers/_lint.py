"""Stable check ids for diagnostics (lint and type errors), shared by the ruff, mypy, pyright, eslint
and tsc parsers.

Why line numbers are NOT part of a diagnostic's id: the baseline is taken on the base commit and
compared with every iteration. If an agent adds three lines at the top of a file, every pre-existing
`F401` below would get a new id (`...:12` becomes `...:15`), read as "old failure fixed, new failure
introduced": the baseline comparison would report fake progress and fake regressions at once. So the
id is `tool:CODE:path:key#n` where

- `key` is what the diagnostic is *about*: the first backticked or quoted symbol in the message
  (`os` in "`os` imported but unused", `undefined_name` in 'Name "undefined_name" is not defined'),
  else the message with numbers blanked (so "expected 3 arguments" stays the same key when the
  count changes only through a line shift elsewhere);
- `#n` is the occurrence index among diagnostics with the same tool, code, path and key, counted in
  line order. Two identical `F841 result` in one file stay distinct (`#0`, `#1`).

The line and column stay in `location`, where the reader needs them. The index can still shift when an
identical diagnostic is added *above* an existing one; that is the honest residue of having no better
identity, and it only ever affects diagnostics that are indistinguishable by their text anyway.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from onloop.gates.checks import CheckResult, CheckStatus

_SYMBOL = re.compile(r"`([^`]{1,80})`|\"([^\"]{1,80})\"|'([^']{1,80})'")
_NUMBER = re.compile(r"\d+")
_KEY_MAX = 60


@dataclass(frozen=True, slots=True)
class Diagnostic:
    tool: str
    code: str
    path: str
    line: int
    column: int
    message: str
    failing: bool = True  # warnings and notes are reported as passed checks with a message


def diagnostic_key(message: str) -> str:
    """The part of a message that says what it is about; no line-dependent numbers."""
    match = _SYMBOL.search(message)
    symbol = next((group for group in match.groups() if group is not None), None) if match else None
    key = symbol if symbol is not None else _NUMBER.sub("N", message.strip())
    key = re.sub(r"\s+", "_", key)
    return key[:_KEY_MAX]


def relative_path(path: str, root: str | None = None) -> str:
    """A path as the repository knows it: relative to `root` (default: the working directory)."""
    path = path.replace("\\", "/")
    if os.path.isabs(path):
        base = (root or os.getcwd()).replace("\\", "/").rstrip("/") + "/"
        if path.startswith(base):
            path = path[len(base):]
    if path.startswith("./"):
        path = path[2:]
    return str(PurePosixPath(path))


def root_of(output: object) -> str | None:
    """The gate's working directory, if the gate output carries one (a `cwd` attribute), else None.

    Tools that print absolute paths (ruff and mypy JSON, pyright, eslint) are made relative to it, so
    a check has the same id in the baseline worktree and in the run's worktree.
    """
    cwd = getattr(output, "cwd", None)
    return str(cwd) if cwd else None


def to_checks(diagnostics: Iterable[Diagnostic]) -> list[CheckResult]:
    """Checks with occurrence-indexed ids, ordered by path, line and column for stable output."""
    ordered = sorted(diagnostics, key=lambda d: (d.path, d.line, d.column, d.code, d.message))
    seen: dict[str, int] = {}
    checks: list[CheckResult] = []
    for diag in ordered:
        base = f"{diag.tool}:{diag.code}:{diag.path}:{diagnostic_key(diag.message)}"
        index = seen.get(base, 0)
        seen[base] = index + 1
        status = CheckStatus.FAILED if diag.failing else CheckStatus.PASSED
        location = f"{diag.path}:{diag.line}" + (f":{diag.column}" if diag.column else "")
        checks.append(CheckResult(f"{base}#{index}", status, diag.message[:300], location))
    return checks


_SAMPLE = 16384


def sample(text: str) -> str:
    """The head and tail of an output: enough for `detect`, which must not scan a 100 MB log."""
    if len(text) <= 2 * _SAMPLE:
        return text
    head_end = text.rfind("\n", 0, _SAMPLE)
    tail_start = text.find("\n", len(text) - _SAMPLE)
    return text[: max(head_end, 0)] + "\n" + text[tail_start + 1:]
