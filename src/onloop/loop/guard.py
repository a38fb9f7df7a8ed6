"""The diff audit, as the loop uses it: after the agent, before the gates.

The audit itself (protected paths, escapes, deleted/skipped/weakened tests, secrets, blobs) lives in
`onloop.policy.audit`. This module runs it on what the iteration changed since the last checkpoint and
adds the checks that need the loop's view:
- instructions planted in the canon files every later iteration reads (AGENTS.md, the prompts, the
  specs, the plan), judged by the same rule that keeps them out of memory;
- the iteration's diff budget as a whole (`policy.limits.diff_bytes`, `diff_files`): many files each
  under the per-file cap must not add up to a filled disk.
Findings of severity "block" become breaches the loop rolls back; "warn" findings are recorded as
low-severity incidents and the work goes on. Evidence never carries a secret's value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onloop.memory.validate import instruction_code
from onloop.policy.audit import audit_changes
from onloop.workspace import show_file

if TYPE_CHECKING:
    from onloop.loop.iteration import IterationContext

CANON_FILES = ("AGENTS.md", "PROMPT.md", "PROMPT_plan.md")


@dataclass(frozen=True, slots=True)
class Breach:
    kind: str
    summary: str
    severity: str = "high"
    evidence: dict[str, Any] = field(default_factory=dict)


def audit_iteration(ctx: IterationContext, final_message: str) -> list[Breach]:
    """Breaches that roll the iteration back; warnings are recorded here and not returned."""
    base = ctx.state.last_checkpoint or ctx.row.base_commit
    report = audit_changes(ctx.worktree, base, ctx.config.policy, message=final_message)
    breaches = []
    for finding in report.findings:
        text = f"{finding.kind} {finding.path}: {finding.evidence}"[:300]
        entropy_blocks = finding.kind == "secret" and ctx.config.policy.entropy_secrets == "block"
        if finding.severity == "block" or entropy_blocks:
            breaches.append(Breach(finding.kind, text, "high", {"path": finding.path, "detail": finding.evidence}))
        else:
            ctx.events.incident(finding.kind, text, severity="low", path=finding.path)
    breaches += planted_instructions(ctx, base, report.changed)
    breaches += diff_budget(ctx, report.changed)
    return breaches


def _is_canon(ctx: IterationContext, path: str) -> bool:
    c = ctx.config.context
    return path in (*CANON_FILES, c.prompt, c.plan_prompt, c.agents, c.plan) or (
        path.startswith(c.specs.rstrip("/") + "/") and path.endswith(".md"))


def planted_instructions(ctx: IterationContext, base: str, changed: Sequence[str]) -> list[Breach]:
    found = []
    for path in changed:
        file = ctx.worktree / path
        if not _is_canon(ctx, path) or not file.is_file():
            continue
        before = set((show_file(ctx.worktree, base, path) or "").splitlines())
        for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
            if line not in before and instruction_code(line):
                found.append(Breach("planted_instruction", f"planted_instruction {path}: an instruction aimed at "
                                    "the agent's authority or at onloop's verification", "high",
                                    {"path": path, "line": line[:200]}))
                break
    return found


def diff_budget(ctx: IterationContext, changed: Sequence[str]) -> list[Breach]:
    limits = ctx.config.policy.limits
    if len(changed) > limits.diff_files:
        return [Breach("oversized_diff", f"oversized_diff: {len(changed)} files changed "
                       f"(limit policy.limits.diff_files = {limits.diff_files})", "high", {"files": len(changed)})]
    total = sum(_size(ctx.worktree / path) for path in changed)
    if total > limits.diff_bytes:
        return [Breach("oversized_diff", f"oversized_diff: {total} bytes in changed files (limit "
                       f"policy.limits.diff_bytes = {limits.diff_bytes})", "high", {"bytes": total})]
    return []


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size if path.is_file() else 0
    except OSError:
        return 0
