"""One iteration, in order: context, agent, audit, gates, checkpoint, receipt, decision.

Each step is a small function; `run_iteration` reads like the contract in specs/loop.md:
1. assemble the fresh context (operator messages first, the last feedback, the plan, ...);
2. run the backend inside the sandbox, within budget (rate limits are waits, see `agent_call`);
3. a failed agent run is rolled back on the run branch (its work kept under a ref) and counted;
4. audit the diff: a breach is rolled back, recorded as an incident and fed back to the next iteration;
5. run the gates, compare with the baseline per check, compute the verified delta;
6. commit a checkpoint (tagged when every gate passes) and write the receipt with the run's counters
   in one transaction;
7. decide: done (verified, never merely claimed), continue, or stop with a reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from onloop.backends import AgentBackend
from onloop.clock import Clock, utc_iso
from onloop.config import Config
from onloop.errors import StopRun, WorkspaceError
from onloop.gates.baseline import GateVerdict, compare, fingerprint
from onloop.gates.runner import GateRun
from onloop.loop import rules
from onloop.loop.agent_call import NOTES_FILE, AgentCall, call_agent
from onloop.loop.events import EventLog
from onloop.loop.feedback import build_context, failure_summary, with_denials
from onloop.loop.gating import Gates, Judged, allowed_env, judge, run_judges
from onloop.loop.guard import Breach, audit_iteration, review_findings
from onloop.loop.hallucinations import BLOCKING, check_iteration
from onloop.loop.plan import Plan, newly_closed, read_plan
from onloop.loop.setup import RunPaths
from onloop.loop.state import RunState
from onloop.loop.stop import StopReason
from onloop.loop.verify import Delta, compute_delta, done_blockers
from onloop.models.metered import Meter
from onloop.policy.secrets import scrub
from onloop.process import Sandbox
from onloop.store import quarantine
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.store.runs import RunRow
from onloop.workspace import (
    changed_paths,
    checkpoint,
    clean_untracked,
    diff_text,
    reset_to,
    rollback,
    tag,
    working_diff,
)

Failing = dict[str, frozenset[str]]


@dataclass
class IterationContext:
    db: Database
    row: RunRow
    config: Config
    paths: RunPaths
    clock: Clock
    events: EventLog
    state: RunState
    sandbox: Sandbox
    gates: Gates
    backend: AgentBackend
    fallback: AgentBackend | None
    baseline: dict[str, GateRun]
    previous_failing: Failing
    operator_messages: list[str] = field(default_factory=list)
    flaky: dict[str, frozenset[str]] = field(default_factory=dict)
    base_plan_open: tuple[str, ...] = ()  # the plan's open items at the run's base commit
    base_plan_items: tuple[str, ...] = ()  # every item of the base plan (the operator's own words)
    test_files: frozenset[str] = frozenset()  # files the gates collected tests from at baseline
    run_started: float = 0.0
    elapsed_at_start: float = 0.0
    meter: Meter | None = None  # onloop's own model calls (judges): the run's budget, limits and counters

    @property
    def worktree(self) -> Path:
        return Path(self.row.worktree)

    def elapsed(self) -> float:
        return self.elapsed_at_start + (self.clock.monotonic() - self.run_started)


@dataclass
class Receipt:
    """What one iteration did, cost and decided. Stored whole as JSON, and in columns for queries."""

    n: int
    data: dict[str, Any] = field(default_factory=dict)

    def set(self, **values: Any) -> None:
        self.data.update(values)


def run_iteration(ctx: IterationContext) -> tuple[rules.Decision, Failing]:
    n = ctx.state.iterations_done + 1
    ctx.events.iteration = n
    plan_before = read_plan(ctx.worktree / ctx.config.context.plan)
    receipt = Receipt(n, {"iteration": n, "plan_item": plan_before.current, "mode": ctx.config.run.mode,
                          "operator_messages": ctx.operator_messages, "sandbox": ctx.sandbox.name})
    started, t0 = ctx.clock.now(), ctx.clock.monotonic()
    store.begin_iteration(ctx.db, ctx.row.id, n, 1, {"plan_item": plan_before.current, "backend": ctx.backend.name,
                                                     "started_at": utc_iso(started)})
    ctx.state.iterations_done = n
    ctx.events.emit("iteration_started", f"iteration {n}: {plan_before.current or '(no open plan item)'}",
                    plan_item=plan_before.current)
    call = _agent(ctx, n, plan_before, receipt)
    outcome, failing = _after_agent(ctx, n, call, plan_before, receipt)
    receipt.set(feedback=with_denials(str(receipt.data.get("feedback", "")), call.result.permission_denials,
                                      ctx.worktree))
    rules.update_streaks(ctx.state, outcome)
    ctx.state.elapsed_seconds = ctx.elapsed()
    decision = rules.after_iteration(ctx.state, ctx.config.run, outcome)
    receipt.set(decision="stop" if decision else "continue",
                reason=f"{decision[0].value}: {decision[1]}" if decision else _continue_reason(outcome),
                wall_seconds=round(ctx.clock.monotonic() - t0, 3), started_at=utc_iso(started))
    _write_receipt(ctx, receipt, call)
    return decision, failing


def _agent(ctx: IterationContext, n: int, plan: Plan, receipt: Receipt) -> AgentCall:
    last = store.last_receipt(ctx.db, ctx.row.id)
    feedback = str(last.get("feedback", "")) if last else ""
    context = build_context(ctx.config, ctx.worktree, plan, feedback, ctx.operator_messages,
                            memory=_memory(ctx))
    context_path = ctx.paths.logs / f"iteration-{n:03d}.context.md"
    context_path.write_text(scrub(context.text), encoding="utf-8")  # evidence: exactly what the agent was given
    receipt.set(context_tokens=context.tokens, context_cuts=list(context.cuts), context_path=str(context_path))
    env = allowed_env(ctx.config)
    call = call_agent(ctx, n, context.text, env)
    result = call.result
    claimed = ctx.config.run.done_marker in result.final_message
    receipt.set(backend=call.backend_name, model=result.model, agent_status=result.status.value,
                agent_error=scrub(result.error or "") or None, attempts=call.attempts, rate_limits=call.rate_limits,
                tokens_in=call.usage.input_tokens, tokens_out=call.usage.output_tokens,
                cost_usd=str(call.cost), cost_source=result.cost.source.value, claimed_done=claimed,
                transcript=call.transcript, final_message=scrub(result.final_message[-2000:]),
                permission_denials=[str(d) for d in result.permission_denials])
    ctx.events.emit("agent_finished", f"agent {result.status.value} ({call.usage.total_tokens} tokens, "
                    f"${call.cost:.4f})", status=result.status.value, claimed_done=claimed)
    return call


def _memory(ctx: IterationContext) -> str:
    if not ctx.config.memory.enabled:
        return ""
    from onloop.memory import render_injection

    return render_injection(ctx.db, ctx.worktree, ctx.row.id, ctx.config.memory.token_budget, clock=ctx.clock)


HOSTILE_NOTE_CODES = ("REJECT_INSTRUCTION", "REJECT_SECRET", "REJECT_PII")


def _ingest_notes(ctx: IterationContext, n: int, attempt: int) -> None:
    """Notes the agent saved (built-in tool, `onloop note`, or the notes file) go through validation."""
    notes = ctx.paths.iteration_scratch(n, attempt) / NOTES_FILE
    if not ctx.config.memory.enabled or not notes.exists():
        return
    from onloop.memory import ingest_notes_file

    report = ingest_notes_file(ctx.db, notes, ctx.row.id, n, clock=ctx.clock)
    codes = sorted({r.code for r in report.results if not r.ok})
    ctx.events.emit("memory", f"memory notes: {report.accepted} accepted, {report.rejected + report.malformed} "
                    f"rejected", accepted=report.accepted, rejected=report.rejected, codes=codes)
    hostile = [code for code in codes if code in HOSTILE_NOTE_CODES]
    if hostile:  # the codes only: a rejected note's text is stored nowhere
        ctx.events.incident("memory_rejected", f"memory notes refused: {', '.join(hostile)}", severity="medium",
                            codes=", ".join(hostile))


def _after_agent(ctx: IterationContext, n: int, call: AgentCall, plan_before: Plan,
                 receipt: Receipt) -> tuple[rules.IterationOutcome, Failing]:
    """Whatever the agent left in its worktree ends in a verdict, an incident with a rollback, or (if
    even the rollback fails) a `blocked` stop; never in an unhandled error."""
    try:
        if call.result.failed:
            return _agent_failed(ctx, n, call, receipt), ctx.previous_failing
        breaches = audit_iteration(ctx, call.result.final_message)
        if breaches:
            return _breach(ctx, n, breaches, receipt), ctx.previous_failing
        _ingest_notes(ctx, n, call.attempts)  # only from an iteration the audit let through
        return _verify(ctx, n, call, plan_before, receipt)
    except (WorkspaceError, OSError, UnicodeError) as exc:
        breach = Breach("worktree_error", f"worktree_error: onloop could not process the worktree: {exc}"[:300],
                        "high", {"detail": str(exc)[:500]})
        try:
            return _breach(ctx, n, [breach], receipt), ctx.previous_failing
        except (WorkspaceError, OSError, UnicodeError) as again:
            raise StopRun(StopReason.BLOCKED, f"the worktree cannot be restored after iteration {n}: {again}") from None


def _agent_failed(ctx: IterationContext, n: int, call: AgentCall, receipt: Receipt) -> rules.IterationOutcome:
    result = call.result
    kept = _rollback(ctx, n, f"agent {result.status.value}")
    feedback = f"The previous iteration failed ({result.status.value}: {result.error or 'no detail'}); its " \
               "changes were rolled back."
    receipt.set(status="rolled_back", rejected_ref=kept, feedback=feedback, gates={})
    ctx.events.emit("rolled_back", f"agent {result.status.value}: iteration rolled back", rejected_ref=kept)
    return rules.IterationOutcome(verified_done=False, progress=False, fingerprint=None, agent_failed=True,
                                  agent_fatal=result.error if result.fatal else None)


def _breach(ctx: IterationContext, n: int, breaches: list[Breach], receipt: Receipt) -> rules.IterationOutcome:
    # Work that smuggled a secret is not kept as a commit (a mirror push would ship it): its diff is
    # kept as a redacted file in the run's logs instead.
    secret = any(b.kind == "secret" for b in breaches)
    kept = _rollback(ctx, n, "policy breach", keep=not secret)
    ctx.state.breaches += 1
    for breach in breaches:
        ctx.events.incident(breach.kind, breach.summary, severity=breach.severity, **breach.evidence)
    reasons = "; ".join(b.summary for b in breaches[:5])
    receipt.set(status="rolled_back", rejected_ref=kept, incidents=[b.kind for b in breaches], gates={},
                feedback=f"The previous iteration was rolled back by the guardrails: {reasons}. Do not do that.")
    blocked = ctx.state.breaches >= ctx.config.policy.max_breaches
    return rules.IterationOutcome(verified_done=False, progress=False, fingerprint=None, agent_failed=False,
                                  blocked=blocked)


def _rollback(ctx: IterationContext, n: int, why: str, *, keep: bool = True) -> str | None:
    base = ctx.state.last_checkpoint or ctx.row.base_commit
    caches = ctx.config.policy.caches
    if not keep:
        diff = ctx.paths.logs / f"iteration-{n:03d}.rejected.diff"
        diff.write_text(scrub(working_diff(ctx.worktree, base)), encoding="utf-8")
        reset_to(ctx.worktree, ctx.row.id, base, keep=caches)
        return str(diff)
    return rollback(ctx.worktree, ctx.row.id, n, base, f"onloop: iteration {n} rolled back ({why})", keep=caches)


def _verify(ctx: IterationContext, n: int, call: AgentCall, plan_before: Plan,
            receipt: Receipt) -> tuple[rules.IterationOutcome, Failing]:
    """Commit the candidate, then judge it: gates on a sealed checkout of that very commit (with the
    harness of the base), hallucinations and review findings on the whole branch, then "done"."""
    previous = ctx.state.last_checkpoint or ctx.row.base_commit
    sha = checkpoint(ctx.worktree, _commit_message(n, plan_before))
    clean_untracked(ctx.worktree, ctx.row.id, keep=ctx.config.policy.caches, scanned=True)  # the audit scanned it
    runs, verdicts = _gates(ctx, n, sha, receipt)
    plan_after = read_plan(ctx.worktree / ctx.config.context.plan)
    green = bool(verdicts) and all(v.ok for v in verdicts.values())
    tag_name = f"onloop/{ctx.row.id}/green/{n}" if green else None
    if tag_name:
        tag(ctx.worktree, tag_name, sha)
    delta = compute_delta(ctx.worktree, ctx.row.base_commit, previous, sha, ctx.config, verdicts,
                          newly_closed(plan_before, plan_after))
    claimed = bool(receipt.data.get("claimed_done"))
    branch = changed_paths(ctx.worktree, ctx.row.base_commit, sha)  # caches and logs too: they run as well
    made_up, made_up_notes = _hallucinations(ctx, branch, delta, call.result.final_message)
    review, review_notes = _review(ctx, branch)
    removed = _removed_plan_items(ctx, plan_before, plan_after)
    must_close = tuple(dict.fromkeys((*ctx.base_plan_open, *plan_before.open_items)))
    blockers = done_blockers(ctx.config, verdicts, plan_after, delta, must_close) + made_up
    incidents = ["hallucination"] * len(made_up_notes) + (["plan_tamper"] if removed else [])
    if claimed and (blockers or review):
        ctx.events.incident("false_done", "completion claimed but not verified: " + "; ".join(blockers + review),
                            severity="medium", blockers=blockers + review)
        incidents.append("false_done")
    removed_note = [f"Plan items must be checked off when done, never removed: {', '.join(removed[:5])}"
                    if removed else ""]
    feedback = "\n".join([failure_summary(runs, verdicts), *made_up_notes, *review_notes, *removed_note]).strip()
    if claimed and (blockers or review):
        feedback = ("Your completion claim was refused: " + "; ".join(blockers + review) + ".\n\n" + feedback).strip()
    fp = fingerprint(runs, verdicts)
    receipt.set(status="completed", commit=sha, tag=tag_name, gates={k: v.to_dict() for k, v in verdicts.items()},
                delta=delta.to_dict(), done_blockers=blockers, review=review, feedback=feedback, fingerprint=fp,
                incidents=incidents)
    _emit_gates(ctx, verdicts)
    ctx.state.last_checkpoint = sha  # judged: the next iteration starts here (a failure above rolls back)
    verified = not blockers and _done_allowed(ctx, claimed)
    outcome = rules.IterationOutcome(verified_done=verified and not review, progress=delta.progress, fingerprint=fp,
                                     agent_failed=False, review="; ".join(review) if verified and review else None)
    return outcome, {name: run.failing for name, run in runs.items()}


def _gates(ctx: IterationContext, n: int, sha: str,
           receipt: Receipt) -> tuple[dict[str, GateRun], dict[str, GateVerdict]]:
    """Every gate on the sealed tree of `sha`, judged against the baseline (with re-runs on evidence),
    then the judges when everything else passed."""
    label = f"i{n:03d}"
    tree = ctx.gates.tree(sha)
    runs = ctx.gates.run_all(tree.tree, label)
    verdicts: dict[str, GateVerdict] = {}
    for name in list(runs):
        ignore = quarantine.quarantined(ctx.db, ctx.row.workspace, name, ctx.row.id)
        judged = judge(ctx.gates, name, runs[name], tree.tree, ctx.baseline.get(name),
                       ctx.previous_failing.get(name, frozenset()), ignore, label)
        runs[name], verdicts[name] = judged.run, judged.verdict
        if judged.flaky:
            _quarantine(ctx, name, judged)
    if ctx.config.gates and all(v.ok for v in verdicts.values()):
        for name, run in run_judges(ctx.config, diff_text(ctx.worktree, ctx.row.base_commit, sha), ctx.meter).items():
            runs[name] = run
            verdicts[name] = compare(run, None, frozenset())
    receipt.set(flaky={name: sorted(v) for name, v in ctx.flaky.items() if v},
                harness={"restored": list(tree.restored), "dropped": list(tree.dropped)})
    if tree.restored or tree.dropped:
        ctx.events.emit("harness", f"gates ran with the harness of the base: {len(tree.restored)} file(s) restored, "
                        f"{len(tree.dropped)} new harness file(s) not loaded", restored=list(tree.restored)[:20],
                        dropped=list(tree.dropped)[:20])
    return runs, verdicts


def _quarantine(ctx: IterationContext, name: str, judged: Judged) -> None:
    flaky = sorted(judged.flaky)
    quarantine.add(ctx.db, ctx.row.workspace, name, flaky, utc_iso(ctx.clock.now()), run_id=ctx.row.id,
                   evidence=judged.evidence)
    ctx.flaky[name] = ctx.flaky.get(name, frozenset()) | judged.flaky
    ctx.events.emit("flaky", f"{name}: {len(flaky)} check(s) flipped on the candidate and on the base commit: "
                    f"quarantined for this run ({', '.join(flaky[:5])}); `onloop quarantine confirm` makes it "
                    "workspace-wide", gate=name, checks=flaky)


def _review(ctx: IterationContext, branch: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Review findings on the branch: (reasons that send the run to review, feedback lines)."""
    findings = review_findings(ctx, branch)
    if findings and ctx.config.policy.spec_changes == "planned" and _spec_change_planned(ctx):
        findings = [f for f in findings if f.kind != "expectation_changed"]
    reasons, notes = [], []
    for finding in findings:
        text = f"{finding.kind} {finding.path}: {finding.evidence}"[:300]
        _incident_once(ctx, finding.kind, text, key=f"{finding.path}|{finding.evidence}", severity="medium",
                       path=finding.path, before=finding.before[:500], after=finding.after[:500])
        reasons.append(f"needs review: {text}")
        notes.append(f"Needs human review ({finding.kind}): {finding.path}: {finding.evidence}")
    return reasons, notes


def _spec_change_planned(ctx: IterationContext) -> bool:
    """A plan item written by the operator (present at the base commit) says the spec changes."""
    return any("spec change" in item.lower() for item in ctx.base_plan_items)


def _incident_once(ctx: IterationContext, kind: str, summary: str, *, key: str, **evidence: Any) -> None:
    """Findings that hold for the whole branch are recorded once per run (by `kind` and `key`, a stable
    identity such as a path or a package name), not every iteration."""
    for incident in store.incidents(ctx.db, ctx.row.id):
        if incident["kind"] == kind and json.loads(incident["evidence_json"] or "{}").get("key") == key:
            return
    severity = str(evidence.pop("severity", "medium"))
    ctx.events.incident(kind, summary, severity=severity, key=key, **evidence)


def _hallucinations(ctx: IterationContext, branch: tuple[str, ...], delta: Delta,
                    message: str) -> tuple[list[str], list[str]]:
    """What the agent made up, on the whole branch: (done blockers, feedback lines). A made-up or
    unverifiable dependency blocks "done" for as long as the branch contains it; its incident is
    recorded once."""
    blockers, notes = [], []
    findings = check_iteration(ctx.worktree, ctx.row.base_commit, branch, delta.changed_paths, message,
                               ctx.config.hallucination, network=ctx.config.policy.network)
    for finding in findings:
        text = f"{finding.category} {finding.subject}: {finding.evidence}"
        if finding.kind == "could_not_verify":
            ctx.events.emit("warning", f"could not verify {text}", category=finding.category)
            if finding.category == "dependency":
                blockers.append(f"unverifiable dependency {finding.subject!r} (`onloop registry sync`, a lock file "
                                "or the installed environment can verify it)")
                notes.append(f"Could not verify ({finding.category}): {finding.evidence}")
            continue
        _incident_once(ctx, "hallucination", text, key=f"{finding.category}|{finding.subject}", severity="medium",
                       category=finding.category, subject=finding.subject)
        notes.append(f"Made up ({finding.category}): {finding.evidence}")
        if finding.category in BLOCKING:
            blockers.append(f"made-up {finding.category} {finding.subject!r}")
    return blockers, notes


def _removed_plan_items(ctx: IterationContext, before: Plan, after: Plan) -> list[str]:
    """Open items that vanished from the plan without being checked off: an incident in build mode."""
    if ctx.config.run.mode != "build":
        return []  # plan mode regenerates the plan: rewriting it is the job
    kept = after.closed_items | set(after.open_items)
    removed = [item for item in before.open_items if item not in kept]
    if removed:
        ctx.events.incident("plan_tamper", f"{len(removed)} open plan item(s) removed instead of done",
                            severity="medium", items=", ".join(removed[:10]))
    return removed


def _done_allowed(ctx: IterationContext, claimed: bool) -> bool:
    # In plan mode the plan is full of open items by design: done needs the agent's claim.
    return claimed or ctx.config.run.mode == "build"


def _emit_gates(ctx: IterationContext, verdicts: Mapping[str, GateVerdict]) -> None:
    for name, v in sorted(verdicts.items()):
        detail = v.broken or (f"{len(v.new_failures)} new, {len(v.fixed)} fixed, {len(v.targets_left)} of "
                              f"{len(v.targets)} target(s) left, {len(v.tolerated)} tolerated")
        if v.reference_failed:
            detail += f"; {len(v.reference_failed)} input(s) not judged: the reference failed on them"
        ctx.events.emit("gate", f"{name}: {v.status} ({detail})", gate=name, status=v.status,
                        new_failures=list(v.new_failures)[:20], targets_left=list(v.targets_left)[:20],
                        broken=v.broken, reference_failed=list(v.reference_failed)[:20])


def _commit_message(n: int, plan: Plan) -> str:
    # Committed before the gates run (they run on this very commit); their verdict is in the receipt
    # and in the green tag.
    return f"onloop: iteration {n}: {plan.current or 'work'}\n\nCandidate of iteration {n}; verdict in its receipt.\n"


def _continue_reason(outcome: rules.IterationOutcome) -> str:
    if outcome.agent_failed:
        return "agent failed; retrying with a fresh context"
    if outcome.progress:
        return "verified progress; plan or gates not finished"
    return "no verified progress this iteration"


def _write_receipt(ctx: IterationContext, receipt: Receipt, call: AgentCall) -> None:
    d = receipt.data
    delta: Delta | dict[str, Any] = d.get("delta") or {}
    # onloop's own model calls of the iteration (judges) are in its cost and tokens, and listed.
    calls = ctx.meter.take_calls() if ctx.meter is not None else []
    tokens_in = call.usage.input_tokens + sum(c.usage.input_tokens for c in calls)
    tokens_out = call.usage.output_tokens + sum(c.usage.output_tokens for c in calls)
    cost = call.cost + sum((c.cost.as_decimal() for c in calls), Decimal("0"))
    if calls:
        d.update(model_calls=[c.to_dict() for c in calls], agent_cost_usd=str(call.cost))
    columns = {
        "status": d.get("status", "completed"), "attempt": call.attempts, "backend": call.backend_name,
        "model": d.get("model"), "ended_at": utc_iso(ctx.clock.now()), "wall_seconds": d.get("wall_seconds"),
        "tokens_in": tokens_in, "tokens_out": tokens_out, "cost_usd": str(cost),
        "cost_source": d.get("cost_source"), "agent_status": d.get("agent_status"),
        "claimed_done": int(bool(d.get("claimed_done"))), "files_changed": _get(delta, "files_changed"),
        "lines_added": _get(delta, "lines_added"), "lines_removed": _get(delta, "lines_removed"),
        "commit_sha": d.get("commit"), "tag": d.get("tag"), "gates_json": json.dumps(d.get("gates", {})),
        "delta_json": json.dumps(delta), "decision": d.get("decision"), "reason": d.get("reason"),
        "transcript_path": call.transcript, "receipt_json": json.dumps(d, default=str),
        "permission_denials": len(call.result.permission_denials),
    }
    store.finish_iteration(ctx.db, ctx.row.id, receipt.n, columns, ctx.state.counters())
    ctx.events.emit("receipt", f"iteration {receipt.n}: {d.get('decision')} ({d.get('reason')})",
                    spend_usd=str(ctx.state.spend_usd), decision=d.get("decision"))


def _get(delta: Any, key: str) -> int:
    return int(delta.get(key, 0)) if isinstance(delta, dict) else 0
