"""What the next iteration learns from this one, and the context it is assembled into.

The feedback of an iteration (stored in its receipt, so it survives a resume) is short: the gate
failures that are new against the baseline, condensed, and the reasons a change was rolled back. It
is the back-pressure: the agent sees exactly what onloop refused, in few tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from onloop.config import Config
from onloop.gates.baseline import GateVerdict
from onloop.gates.checks import CheckResult
from onloop.gates.runner import GateRun
from onloop.loop.context import Context, Section, assemble, read_text, specs_index
from onloop.loop.plan import Plan
from onloop.loop.prompts import DEFAULT_BUILD_PROMPT, DEFAULT_PLAN_PROMPT, ONLOOP_RULES

FEEDBACK_TOKENS = 600


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
