"""The diff audit, as the loop uses it: after the agent, before the gates.

The audit itself (protected paths, escapes, deleted/skipped/weakened tests, secrets, blobs) lives in
`onloop.policy.audit`. This module runs it on what the iteration changed since the last checkpoint and
adds the checks that need the loop's view:
- first, a scan of the whole worktree for what git cannot or must not record (nested repositories,
  fifos, sockets, odd names, huge sparse files, unreadable entries): such a worktree is rolled back
  before onloop's own git commands ever touch it;
- the test harness (`onloop.gates.harness`): an existing harness file changed, or a new one added
  while the policy protects the harness;
- instructions planted in the canon files every later iteration reads (AGENTS.md, the prompts, the
  specs, the plan), judged by the same rule that keeps them out of memory;
- the iteration's diff budget as a whole (`policy.limits.diff_bytes`, `diff_files`): many files each
  under the per-file cap must not add up to a filled disk.
Findings of severity "block" become breaches the loop rolls back; "warn" findings are recorded as
low-severity incidents and the work goes on. Evidence never carries a secret's value.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from onloop.gates.harness import SECTIONED
from onloop.memory.validate import instruction_code
from onloop.policy.audit import audit_changes
from onloop.workspace import show_file

if TYPE_CHECKING:
    from onloop.loop.iteration import IterationContext
    from onloop.policy.review import ReviewFinding

CANON_FILES = ("AGENTS.md", "PROMPT.md", "PROMPT_plan.md")


@dataclass(frozen=True, slots=True)
class Breach:
    kind: str
    summary: str
    severity: str = "high"
    evidence: dict[str, Any] = field(default_factory=dict)


def audit_iteration(ctx: IterationContext, final_message: str) -> list[Breach]:
    """Breaches that roll the iteration back; warnings are recorded here and not returned."""
    unsafe = worktree_breaches(ctx)
    if unsafe:
        return unsafe  # git must not even look at this worktree: roll it back as it is
    base = ctx.state.last_checkpoint or ctx.row.base_commit
    report = audit_changes(ctx.worktree, base, ctx.config.policy, message=final_message, test_files=ctx.test_files)
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
    breaches += harness_changes(ctx, report.changed)
    return breaches


def worktree_breaches(ctx: IterationContext) -> list[Breach]:
    from onloop.policy.worktree_scan import scan_worktree

    # One file above the iteration's whole diff budget can only be a breach; finding it here, by its
    # apparent size, keeps git from hashing a 100 GB sparse file.
    findings = scan_worktree(ctx.worktree, max_file_bytes=ctx.config.policy.limits.diff_bytes,
                             keep=ctx.config.policy.caches)
    return [Breach(f.kind, f"{f.kind} {f.path}: {f.evidence}"[:300], "high", {"path": f.path, "detail": f.evidence})
            for f in findings]


def harness_changes(ctx: IterationContext, changed: Sequence[str]) -> list[Breach]:
    """Harness files changed this iteration, judged against the base commit."""
    from onloop.gates.harness import harness_breaches

    base = ctx.row.base_commit
    harness = ctx.gates.harness
    relevant = [p for p in changed if harness.is_harness(p) or PurePosixPath(p).name in SECTIONED]
    if not relevant:
        return []
    rows, in_base = [], {}
    for path in relevant:
        before = show_file(ctx.worktree, base, path)
        file = ctx.worktree / path
        after = file.read_text(encoding="utf-8", errors="replace") if file.is_file() else None
        in_base[path] = before is not None
        rows.append((path, before, after))
    return [Breach("harness_changed", f"harness_changed {c.path}: {c.evidence}"[:300], "high",
                   {"path": c.path, "detail": c.evidence}) for c in harness_breaches(harness, rows, in_base)]


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


def review_findings(ctx: IterationContext, changed_since_base: Sequence[str]) -> list[ReviewFinding]:
    """What a human must look at before this branch may be called done: expectations of existing
    tests that changed, and code outside the tests that looks at or patches the test machinery.
    Judged on the whole branch against its base, so it holds for as long as the branch contains it."""
    from onloop.policy.audit import is_test_path
    from onloop.policy.review import changed_expectations, suppressions_added, suspicious_code, suspicious_test_code

    base, harness = ctx.row.base_commit, ctx.gates.harness
    tools = ctx.gates.tools
    found: list[ReviewFinding] = []
    for path in changed_since_base:
        if not _source_like(path):
            continue
        file = ctx.worktree / path
        after = file.read_text(encoding="utf-8", errors="replace") if file.is_file() else None
        before = show_file(ctx.worktree, base, path)
        if harness.is_harness(path):
            # The gates take harness files from the base; a new one they keep (policy.harness =
            # "extend") is loaded by the tests like test code, and reviewed as such.
            if before is None and after is not None and harness.keeps_new(path):
                found += suspicious_test_code(path, None, after)
            continue
        if after is not None:
            found += suppressions_added(path, before, after, tools)
        if is_test_path(path) or path in ctx.test_files:
            if before is not None:
                found += changed_expectations(path, before, after)
            if after is not None:
                found += suspicious_test_code(path, before, after)
        elif after is not None:
            found += suspicious_code(path, before, after)
        if before is None and after is not None:
            found += shadowing(path)
    return found


# Modules a test run imports by name: a file of the project that takes one of these names takes over
# the runner itself (`python -m unittest` runs ./unittest/__main__.py; ./pytest.py shadows pytest).
_RUNNER_MODULES = frozenset({"pytest", "_pytest", "py", "pluggy", "nose", "nose2", "hypothesis", "coverage",
                             "xdist", "onloop", "sitecustomize", "usercustomize"})
_IMPORT_ROOTS = ("", "src", "tests", "test", "lib")


def shadowing(path: str) -> list[ReviewFinding]:
    """A new module at a place Python or pytest puts first on sys.path (the root, src/, a test dir)
    named like a standard-library module or part of the test machinery."""
    from onloop.policy.review import ReviewFinding

    pure = PurePosixPath(path)
    if pure.suffix == ".py" and pure.name not in ("__init__.py", "__main__.py"):
        name, where = pure.stem, pure.parent
    elif pure.name in ("__init__.py", "__main__.py") and len(pure.parts) >= 2:
        name, where = pure.parent.name, pure.parent.parent
    else:
        return []
    if str(where) not in (".", *_IMPORT_ROOTS) or not (name in sys.stdlib_module_names or name in _RUNNER_MODULES
                                                      or name.startswith("onloop_gate_report")):
        return []
    return [ReviewFinding("suspicious_code", path, f"a new module named {name!r} where it is imported first: it "
                          "shadows the standard library or the test machinery")]


_SOURCE_SUFFIXES = (".py", ".pyi", ".js", ".jsx", ".ts", ".tsx", ".mjs", ".cjs", ".go", ".rs", ".rb")


def _source_like(path: str) -> bool:
    return path.endswith(_SOURCE_SUFFIXES)
