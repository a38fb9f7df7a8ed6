"""One agent invocation within an iteration, with rate limits handled as waits, not failures.

The budget is checked before every call (and the caller checks it after). A backend that reports a
rate or usage limit makes the loop wait until the reset time it gave (bounded by `rate_limit_max_wait`
and by the time left in the run) and retry the same iteration, with `attempt` incremented; with a
`fallback_backend` configured, the retry goes to the fallback at once instead of waiting. None of this
counts as an agent failure. Every wait and switch is recorded for the receipt.

Two things a backend reports that would otherwise stay buried in its transcript are made events here,
for every attempt: actions its permission system refused (`permission_denied`; a run whose writes were
denied still "succeeds"), and output it could not read and skipped (a `warning` with the count).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from onloop.backends import AgentBackend, AgentEvent, AgentRequest, AgentResult, AgentStatus
from onloop.errors import StopRun
from onloop.loop import rules
from onloop.loop.feedback import describe_denials
from onloop.loop.stop import StopReason
from onloop.models.ratelimit import wait_seconds
from onloop.policy.sandbox import limits_from_policy
from onloop.policy.secrets import scrub_file
from onloop.store import runs as store
from onloop.usage import Usage

if TYPE_CHECKING:
    from onloop.loop.iteration import IterationContext

MAX_ATTEMPTS = 10
NOTES_FILE = "memory_notes.jsonl"  # in the iteration's scratch dir: agents append notes, onloop ingests
DEFAULT_WAIT_SECONDS = 60.0


@dataclass
class AgentCall:
    result: AgentResult
    backend_name: str
    attempts: int
    transcript: str
    rate_limits: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage = Usage()
    cost: Decimal = Decimal("0")


def call_agent(ctx: IterationContext, n: int, prompt: str, env: dict[str, str]) -> AgentCall:
    backend, attempt = ctx.backend, 1
    limits: list[dict[str, Any]] = []
    spent_usage, spent_cost = Usage(), Decimal("0")
    while True:
        _check_budget(ctx)
        transcript = ctx.paths.transcript(n, attempt)
        store.update_iteration_fields(ctx.db, ctx.row.id, n, {"transcript_path": str(transcript),
                                                              "attempt": attempt, "backend": backend.name})
        try:
            result = backend.run(_request(ctx, n, attempt, prompt, env, transcript))
        finally:
            for log in (transcript, transcript.with_suffix(".stderr.log")):
                scrub_file(log)
        spent_usage, spent_cost = spent_usage + result.usage, spent_cost + result.cost.as_decimal()
        _account(ctx, result)
        _report(ctx, backend, result)
        if result.status is not AgentStatus.RATE_LIMITED or attempt >= MAX_ATTEMPTS:
            return AgentCall(result, backend.name, attempt, str(transcript), limits, spent_usage, spent_cost)
        backend = _after_rate_limit(ctx, backend, result, limits)
        attempt += 1


def _request(ctx: IterationContext, n: int, attempt: int, prompt: str, env: dict[str, str],
             transcript: Any) -> AgentRequest:
    scratch = ctx.paths.iteration_scratch(n, attempt)
    scratch.mkdir(parents=True, exist_ok=True)
    remaining_time = max(1.0, ctx.config.run.max_time - ctx.elapsed())
    remaining_money = ctx.config.run.budget_usd - ctx.state.spend_usd

    def on_event(event: AgentEvent) -> None:
        ctx.events.emit(f"agent_{event.kind}", event.summary, backend=ctx.backend.name)

    env = {**env, "ONLOOP_NOTES_FILE": str(scratch / NOTES_FILE)}
    return AgentRequest(
        prompt=prompt, worktree=ctx.worktree, log_path=transcript, scratch_dir=scratch, sandbox=ctx.sandbox,
        timeout=min(ctx.config.run.agent_timeout, remaining_time), run_id=ctx.row.id, iteration=n,
        attempt=attempt, env=env, budget_remaining_usd=remaining_money, on_event=on_event,
        limits=limits_from_policy(ctx.config.policy),
    )


def _account(ctx: IterationContext, result: AgentResult) -> None:
    ctx.state.tokens_in += result.usage.input_tokens
    ctx.state.tokens_out += result.usage.output_tokens
    ctx.state.spend_usd += result.cost.as_decimal()


def _report(ctx: IterationContext, backend: AgentBackend, result: AgentResult) -> None:
    if result.permission_denials:
        denied = describe_denials(result.permission_denials, ctx.worktree)
        count = len(result.permission_denials)
        ctx.events.emit("permission_denied", f"{backend.name}: {count} action(s) denied: {'; '.join(denied[:5])}",
                        backend=backend.name, count=count, denials=denied[:50])
    if result.malformed_events:
        ctx.events.emit("warning", f"{backend.name}: {result.malformed_events} output event(s) did not match the "
                        "CLI's schema and were skipped (see the transcript)", backend=backend.name,
                        malformed_events=result.malformed_events)


def _check_budget(ctx: IterationContext) -> None:
    ctx.state.elapsed_seconds = ctx.elapsed()  # a retry after a rate-limit wait sees the time it waited
    decision = rules.before_agent_call(ctx.state, ctx.config.run)
    if decision:
        raise StopRun(*decision)


def _after_rate_limit(ctx: IterationContext, backend: AgentBackend, result: AgentResult,
                      limits: list[dict[str, Any]]) -> AgentBackend:
    wait = wait_seconds(result.rate_limit_reset, ctx.clock.now(), DEFAULT_WAIT_SECONDS)
    record: dict[str, Any] = {"backend": backend.name, "reset_at": str(result.rate_limit_reset),
                              "message": (result.error or "")[:200]}
    limits.append(record)
    if ctx.fallback is not None and backend is not ctx.fallback:
        record["action"] = f"switched to fallback {ctx.fallback.name}"
        ctx.events.emit("rate_limited", f"{backend.name} rate limited; switching to {ctx.fallback.name}", **record)
        return ctx.fallback
    remaining = ctx.config.run.max_time - ctx.elapsed()
    if wait > remaining:
        raise StopRun(StopReason.MAX_TIME, f"rate limited until {result.rate_limit_reset}, after the time cap")
    if wait > ctx.config.run.rate_limit_max_wait:
        raise StopRun(StopReason.MAX_TIME, f"rate limited for {wait:.0f}s, more than run.rate_limit_max_wait")
    record["action"] = f"waited {wait:.1f}s"
    ctx.events.emit("rate_limited", f"{backend.name} rate limited; waiting {wait:.1f}s then retrying", **record)
    ctx.clock.sleep(wait)
    return backend
