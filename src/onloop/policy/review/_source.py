"""Source text and AST helpers that both detectors need, so that both read Python the same way.

Both detectors parse with `ast` and fall back to lines when a text does not parse; `parsed` is the one
place that decides what "does not parse" means: a syntax error, a null byte (`ValueError`), or nesting
deep enough to exhaust the parser or a visitor (`RecursionError`). Either way the caller gets None and
never an exception, since the detectors must not raise on odd input.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


def parsed(text: str, collect: Callable[[ast.Module], _T]) -> _T | None:
    """`collect` applied to the AST of `text`, or None if `text` cannot be parsed or walked."""
    try:
        return collect(ast.parse(text))
    except (SyntaxError, ValueError, RecursionError):
        return None  # unparsable (or nested past the parser's depth): the caller falls back to lines


def source_lines(text: str) -> list[str]:
    # The line ends of the tokenizer, not those of str.splitlines (which also splits on \f and \x1c).
    return re.split(r"\r\n|\r|\n", text)


def source_segment(lines: list[str], node: ast.AST, max_lines: int = 20) -> str:
    """`ast.get_source_segment` without re-splitting the whole text on every call (quadratic in big files)."""
    start: int | None = getattr(node, "lineno", None)
    end: int | None = getattr(node, "end_lineno", None)
    col: int | None = getattr(node, "col_offset", None)
    end_col: int | None = getattr(node, "end_col_offset", None)
    if start is None or end is None or col is None or end_col is None or not 0 < start <= end <= len(lines):
        return ""
    if start == end:
        return lines[start - 1].encode()[col:end_col].decode("utf-8", "replace")  # offsets count UTF-8 bytes
    first = lines[start - 1].encode()[col:].decode("utf-8", "replace")
    if end - start >= max_lines:
        return "\n".join([first, *lines[start : start + max_lines]])  # long enough for a one-line excerpt
    last = lines[end - 1].encode()[:end_col].decode("utf-8", "replace")
    return "\n".join([first, *lines[start : end - 1], last])


def simple_assignment(node: ast.AST) -> tuple[str, ast.expr | None]:
    """`name = value` or `name: T = value` as (name, value); anything else as ("", None)."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id, node.value
    return "", None
