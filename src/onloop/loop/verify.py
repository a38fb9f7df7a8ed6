"""The verified delta of an iteration, and what still stands between the run and "done".

onloop, not the agent, decides "done". `done_blockers` lists every condition of the contract that is
not met (an empty list means verified); the list is what a refused completion claim is told and what
its `false_done` incident records as evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from onloop.config import Config
from onloop.gates.baseline import GateVerdict
from onloop.loop.plan import Plan
from onloop.workspace import diff_stat, numstat, summarize


@dataclass(frozen=True, slots=True)
class Delta:
    checks_fixed: tuple[str, ...]
    checks_broken: tuple[str, ...]
    plan_items_closed: tuple[str, ...]
    files_changed: int
    lines_added: int
    lines_removed: int
    run_files_changed: int  # against the run's base: "a real diff"
    changed_paths: tuple[str, ...] = ()  # this iteration's, caches and logs left out

    @property
    def progress(self) -> bool:
        closed_with_diff = bool(self.plan_items_closed) and self.files_changed > 0
        return bool(self.checks_fixed) or closed_with_diff or self.files_changed > 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["progress"] = self.progress
        return data


def canon_ignores(config: Config) -> tuple[str, ...]:
    """Files whose change is not "work" in build mode: the plan is bookkeeping, not a diff."""
    return (config.context.plan,) if config.run.mode == "build" else ()


def compute_delta(worktree: Path, base: str, previous: str, head: str, config: Config,
                  verdicts: Mapping[str, GateVerdict], closed: tuple[str, ...]) -> Delta:
    ignore = canon_ignores(config)
    this_iteration = numstat(worktree, previous, head)
    step = summarize(this_iteration, ignore=ignore)
    whole = diff_stat(worktree, base, head, ignore=ignore)
    fixed = tuple(sorted(f"{g}:{c}" for g, v in verdicts.items() for c in v.fixed))
    broken = tuple(sorted(f"{g}:{c}" for g, v in verdicts.items() for c in v.new_failures))
    all_paths = summarize(this_iteration).paths  # the plan too: a claimed edit may be to it
    return Delta(fixed, broken, closed, step.files, step.added, step.removed, whole.files, all_paths)


def done_blockers(config: Config, verdicts: Mapping[str, GateVerdict], plan: Plan, delta: Delta,
                  must_close: tuple[str, ...] = ()) -> list[str]:
    """Every unmet condition of "done". `must_close`: plan items that must be present and checked (the
    base plan's open items and those open before this iteration): deleting an item does not close it."""
    blockers = []
    for name, verdict in sorted(verdicts.items()):
        if not verdict.required:
            continue
        if verdict.broken:
            blockers.append(f"gate {name} is broken ({verdict.broken})")
        elif verdict.new_failures:
            blockers.append(f"gate {name} has {len(verdict.new_failures)} new failing check(s)")
        # Plan mode rewrites the plan, not the code: it must not break anything, but the targets are
        # the build's work.
        if verdict.targets_left and not verdict.broken and config.run.mode == "build":
            shown = ", ".join(verdict.targets_left[:3]) + (" ..." if len(verdict.targets_left) > 3 else "")
            blockers.append(f"gate {name} has {len(verdict.targets_left)} target(s) still failing: {shown}")
    if config.run.mode == "build" and plan.open_items:
        blockers.append(f"the plan still has {len(plan.open_items)} open item(s)")
    missing = [item for item in must_close if item not in plan.closed_items and item not in plan.open_items]
    if config.run.mode == "build" and missing:
        blockers.append(f"{len(missing)} plan item(s) were removed instead of done: {', '.join(missing[:3])}")
    if config.run.mode == "plan" and not plan.items:
        blockers.append("the plan has no items")
    if delta.run_files_changed == 0:
        blockers.append("the run has no real diff against its base")
    return blockers
