"""The stop rules, as pure functions of the run's counters and caps.

`before_iteration` is checked before every agent call (caps, time, money); `after_iteration` after the
receipt of each iteration (done first, so a valid completion on the last allowed iteration is done,
then the caps again, then no_progress, stuck and agent_error). Each returns the reason and a detail
line for the operator, or None to go on.

An agent failure that no retry can fix (the provider refused the credentials: `AgentResult.fatal`)
stops the run with `agent_error` at once, whatever `run.agent_error_limit` says: the next iterations
would fail the same way, each of them spending the CLI's own retries first.
"""

from __future__ import annotations

from dataclasses import dataclass

from onloop.config import RunConfig
from onloop.loop.state import RunState
from onloop.loop.stop import StopReason

Decision = tuple[StopReason, str] | None


@dataclass(frozen=True, slots=True)
class IterationOutcome:
    verified_done: bool
    progress: bool
    fingerprint: str | None
    agent_failed: bool
    blocked: bool = False
    review: str | None = None  # verified in every other way, but a human must look first (why)
    agent_fatal: str | None = None  # the agent failed in a way no retry can fix (why, for the operator)


def before_iteration(state: RunState, caps: RunConfig) -> Decision:
    return _iterations(state, caps) or before_agent_call(state, caps)


def before_agent_call(state: RunState, caps: RunConfig) -> Decision:
    """Time and money, checked before every agent call (retries within an iteration included); the
    iteration cap is not, since the call belongs to an iteration already counted."""
    return _time(state, caps) or _budget(state, caps)


def _iterations(state: RunState, caps: RunConfig) -> Decision:
    if state.iterations_done >= caps.max_iterations:
        return StopReason.MAX_ITERATIONS, f"{state.iterations_done} of {caps.max_iterations} iterations used"
    return None


def _time(state: RunState, caps: RunConfig) -> Decision:
    if state.elapsed_seconds >= caps.max_time:
        return StopReason.MAX_TIME, f"{state.elapsed_seconds:.0f}s of {caps.max_time:.0f}s used"
    return None


def _budget(state: RunState, caps: RunConfig) -> Decision:
    if state.spend_usd >= caps.budget_usd:
        return StopReason.BUDGET, f"spent ${state.spend_usd:.4f} of ${caps.budget_usd}"
    if caps.max_tokens is not None and state.tokens >= caps.max_tokens:
        return StopReason.BUDGET, f"used {state.tokens} of {caps.max_tokens} tokens"
    return None


def after_iteration(state: RunState, caps: RunConfig, outcome: IterationOutcome) -> Decision:
    if outcome.review:
        # Until the review queue exists, a run that needs a human stops here with the reason.
        return StopReason.BLOCKED, f"sent to review instead of done: {outcome.review}"
    if outcome.verified_done:
        return StopReason.DONE, "gates green against the baseline, targets met, plan closed, real diff, clean audit"
    if outcome.blocked:
        return StopReason.BLOCKED, f"{state.breaches} policy breaches: the guardrails refuse to continue"
    if outcome.agent_fatal:
        return StopReason.AGENT_ERROR, outcome.agent_fatal
    if outcome.agent_failed and state.agent_error_streak >= caps.agent_error_limit:
        return StopReason.AGENT_ERROR, f"the backend failed {state.agent_error_streak} times in a row"
    budget = _budget(state, caps)
    if budget:
        return budget
    if outcome.fingerprint and state.stuck_streak >= caps.stuck_limit:
        return StopReason.STUCK, f"the same gate failure ({outcome.fingerprint}) {state.stuck_streak} times in a row"
    if state.no_progress_streak >= caps.no_progress_limit:
        return StopReason.NO_PROGRESS, f"no verified delta for {state.no_progress_streak} iterations in a row"
    return _iterations(state, caps) or _time(state, caps)


def update_streaks(state: RunState, outcome: IterationOutcome) -> None:
    state.agent_error_streak = state.agent_error_streak + 1 if outcome.agent_failed else 0
    state.no_progress_streak = 0 if outcome.progress else state.no_progress_streak + 1
    if outcome.fingerprint is None:
        state.stuck_streak = 0
    elif outcome.fingerprint == state.last_fingerprint:
        state.stuck_streak += 1
    else:
        state.stuck_streak = 1
    state.last_fingerprint = outcome.fingerprint
