"""`update_plan`: ticking, unticking and adding items of `IMPLEMENTATION_PLAN.md`.

The plan is Markdown with task-list items (`- [ ] item`, `- [x] item`). An item is named by its text:
an exact match (ignoring surrounding spaces) wins; otherwise a case-insensitive substring must match
exactly one item. Ambiguity is an error listing the candidates, never a guess.
"""

from __future__ import annotations

import re
from pathlib import Path

PLAN_FILE = "IMPLEMENTATION_PLAN.md"
_ITEM = re.compile(r"^(\s*[-*+] \[)([ xX])(\]\s?)(.*)$")


class PlanError(Exception):
    """The plan could not be changed as asked; the message goes back to the model."""


def update_plan(path: Path, action: str, item: str) -> str:
    """Apply `action` (check, uncheck, add) for `item` to the plan at `path`; returns what changed."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if action == "add":
        prefix = "" if not text or text.endswith("\n") else "\n"
        path.write_text(f"{text}{prefix}- [ ] {item.strip()}\n", encoding="utf-8")
        return f"added: - [ ] {item.strip()}"
    if not path.exists():
        raise PlanError(f"{PLAN_FILE} does not exist; add items first")
    lines = text.splitlines(keepends=True)
    index = _find(lines, item)
    mark = "x" if action == "check" else " "
    match = _ITEM.match(lines[index].rstrip("\n"))
    assert match is not None  # _find only returns item lines
    ending = "\n" if lines[index].endswith("\n") else ""
    lines[index] = f"{match.group(1)}{mark}{match.group(3)}{match.group(4)}{ending}"
    path.write_text("".join(lines), encoding="utf-8")
    return f"{action}ed: {lines[index].strip()}"


def _find(lines: list[str], item: str) -> int:
    wanted = item.strip()
    items = [(i, m.group(4).strip()) for i, line in enumerate(lines) if (m := _ITEM.match(line.rstrip("\n")))]
    exact = [i for i, text in items if text == wanted]
    if len(exact) == 1:
        return exact[0]
    partial = [i for i, text in items if wanted.lower() in text.lower()]
    if len(partial) == 1:
        return partial[0]
    if not partial:
        known = "; ".join(text for _, text in items[:20]) or "(no items)"
        raise PlanError(f"no plan item matches {wanted!r}; items: {known}")
    candidates = "; ".join(lines[i].strip() for i in partial[:10])
    raise PlanError(f"{wanted!r} matches {len(partial)} items, name one exactly: {candidates}")
