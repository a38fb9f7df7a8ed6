"""IMPLEMENTATION_PLAN.md as data: a prioritised checklist of `- [ ]` / `- [x]` items.

The plan belongs to the agent (it keeps it current) and is disposable (plan mode regenerates it); onloop
only reads it: the first open item is "the" item of an iteration, and items closed in an iteration count
toward the verified delta only if the iteration also has a real diff behind them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# The prefix only: the item's text is the rest, stripped with string operations. (A lazy `.+?\s*$`
# backtracks quadratically on a line of many spaces the agent can write: 40 KB took 10 s.)
_ITEM = re.compile(r"[ \t]*[-*+][ \t]+\[(?P<mark>[ xX])\][ \t]+")
ITEM_MAX = 500  # longer item texts are cut: an item is a line of a plan, not a document


@dataclass(frozen=True, slots=True)
class PlanItem:
    text: str
    done: bool


@dataclass(frozen=True, slots=True)
class Plan:
    items: tuple[PlanItem, ...]
    exists: bool = True

    @property
    def open_items(self) -> tuple[str, ...]:
        return tuple(item.text for item in self.items if not item.done)

    @property
    def closed_items(self) -> frozenset[str]:
        return frozenset(item.text for item in self.items if item.done)

    @property
    def current(self) -> str | None:
        return self.open_items[0] if self.open_items else None


def parse_plan(text: str) -> Plan:
    items = []
    for line in text.splitlines():
        match = _ITEM.match(line)
        if match:
            item = line[match.end():].strip()[:ITEM_MAX].rstrip()
            if item:
                items.append(PlanItem(item, match.group("mark") != " "))
    return Plan(tuple(items))


def read_plan(path: Path) -> Plan:
    if not path.exists():
        return Plan((), exists=False)
    return parse_plan(path.read_text(encoding="utf-8", errors="replace"))


def newly_closed(before: Plan, after: Plan) -> tuple[str, ...]:
    """Items open before and closed (checked) after."""
    was_open = set(before.open_items)
    return tuple(sorted(text for text in after.closed_items if text in was_open))
