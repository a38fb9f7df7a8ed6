"""The diff audit, as the loop uses it: after the agent, before the gates.

The audit itself (protected paths, escapes, deleted/skipped/weakened tests, secrets, blobs) lives in
`onloop.policy.audit`; this module runs it on what the iteration changed since the last checkpoint and
turns its findings into breaches the loop rolls back and records as incidents. The evidence never
carries a secret's value: the audit redacts it before it reaches the store or a log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from onloop.policy.audit import audit_changes

if TYPE_CHECKING:
    from onloop.loop.iteration import IterationContext


@dataclass(frozen=True, slots=True)
class Breach:
    kind: str
    summary: str
    severity: str = "high"
    evidence: dict[str, Any] = field(default_factory=dict)


def audit_iteration(ctx: IterationContext, final_message: str) -> list[Breach]:
    base = ctx.state.last_checkpoint or ctx.row.base_commit
    report = audit_changes(ctx.worktree, base, ctx.config.policy, message=final_message)
    return [
        Breach(kind=f.kind, summary=f"{f.kind} {f.path}: {f.evidence}"[:300], severity=f.severity,
               evidence={"path": f.path, "detail": f.evidence})
        for f in report.findings
    ]
