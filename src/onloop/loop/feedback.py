"""What the next iteration learns from this one, and the context it is assembled into.

The feedback of an iteration (stored in its receipt, so it survives a resume) is short: the gate
failures that are new against the baseline, condensed, the reasons a change was rolled back, and the
actions the agent was denied (they did not happen, whatever its final message says). It is the
back-pressure: the agent sees exactly what onloop refused, in few tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from onloop.backends.base import PermissionDenial
from onloop.config import Config
from onloop.gates.baseline import GateVerdict
from onloop.gates.checks import CheckResult
from onloop.gates.runner import GateRun
from onloop.loop.context import Context, Section, assemble, read_text, specs_index
from onloop.loop.plan import Plan
from onloop.loop.prompts import DEFAULT_BUILD_PROMPT, DEFAULT_PLAN_PROMPT, ONLOOP_RULES

FEEDBACK_TOKENS = 600
MAX_DENIALS_SHOWN = 10


def describe_denials(denials: Sequence[PermissionDenial], worktree: Path) -> list[str]:
    """Each distinct denied action as "Tool target", paths inside the worktree made relative to it."""
    return list(dict.fromkeys(_relative(d, worktree) for d in denials))


def denied_summary(denials: Sequence[PermissionDenial], worktree: Path) -> str:
    """One paragraph naming the actions that were denied (paths relative to the worktree), or ""."""
    if not denials:
        return ""
    shown = describe_denials(denials, worktree)
    more = f" and {len(shown) - MAX_DENIALS_SHOWN} more" if len(shown) > MAX_DENIALS_SHOWN else ""
    return (f"These actions were denied: {'; '.join(shown[:MAX_DENIALS_SHOWN])}{more}. They did not happen: "
            "what depended on them is not done. Use the tools and named actions you are allowed instead; "
            "do not try to get around the denial.")


def with_denials(feedback: str, denials: Sequence[PermissionDenial], worktree: Path) -> str:
    """`feedback` with the denied actions appended (unchanged when there were none)."""
    return "\n\n".join(part for part in (feedback.strip(), denied_summary(denials, worktree)) if part)


def _relative(denial: PermissionDenial, worktree: Path) -> str:
    target = Path(denial.target) if denial.target.startswith("/") else None
    for root in (worktree, worktree.resolve()):
        if target is not None and target.is_relative_to(root):
            return str(PermissionDenial(denial.tool, target.relative_to(root).as_posix()))
    return str(denial)


def failure_summary(runs: Mapping[str, GateRun], verdicts: Mapping[str, GateVerdict]) -> str:
    """Per gate: why it is broken, its new failures, and the targets still failing (checks that failed
    before the run and must pass), condensed to a token budget with every failing id kept."""
    from onloop.gates.condense import condense

    parts = []
    for name, verdict in sorted(verdicts.items()):
        if verdict.broken:
            parts.append(f"Gate `{name}` is broken: {verdict.broken}. Nothing it checks counts until it runs to the "
                         "end (code that crashes, hangs or exits the test runner breaks it).")
            continue
        if verdict.reference_failed:
            parts.append(f"Gate `{name}`: {len(verdict.reference_failed)} input(s) were not judged, the reference "
                         f"itself failed on them: {', '.join(verdict.reference_failed[:10])}.")
        shown = set(verdict.new_failures) | set(verdict.targets_left)
        if not shown:
            continue
        checks: Sequence[CheckResult] = [c for c in runs[name].checks if c.check_id in shown]
        condensed = condense(list(checks), token_budget=FEEDBACK_TOKENS // max(1, len(verdicts)))
        head = f"Gate `{name}`:"
        if verdict.new_failures:
            head += f" {len(verdict.new_failures)} new failing check(s)."
        if verdict.targets_left:
            head += (f" {len(verdict.targets_left)} target(s) still failing (they failed before the run and must "
                     f"pass): {', '.join(verdict.targets_left[:10])}.")
        parts.append(f"{head}\n{condensed.text}")
    return "\n\n".join(parts)


def build_context(config: Config, worktree: Path, plan: Plan, feedback: str, operator_messages: Sequence[str],
                  memory: str = "") -> Context:
    c = config.context
    mode_prompt = c.plan_prompt if config.run.mode == "plan" else c.prompt
    default = DEFAULT_PLAN_PROMPT if config.run.mode == "plan" else DEFAULT_BUILD_PROMPT
    standing = read_text(worktree / mode_prompt) or default
    current = f"\n\nThe first open item is: {plan.current}" if plan.current else ""
    sections = [
        Section("operator", "Messages from the operator (read these first)",
                "\n".join(f"- {m}" for m in operator_messages), 0),
        Section("prompt", f"Standing instruction ({mode_prompt})", standing, 0),
        Section("rules", "How this loop works", ONLOOP_RULES.format(marker=config.run.done_marker), 0),
        Section("feedback", "What onloop found after the previous iteration", feedback, 2),
        Section("memory", "Memory", memory, 4),
        Section("plan", f"The plan ({c.plan})", read_text(worktree / c.plan) + current, 3),
        Section("agents", f"Operational notes ({c.agents})", read_text(worktree / c.agents), 5),
        Section("specs", f"Specs index ({c.specs}/)", specs_index(worktree, c.specs), 6),
    ]
    return assemble(sections, c.max_tokens)
