"""Why a run stops, and the exit code each reason maps to.

The numbers are part of onloop's public contract (scripts and automations branch on them): keep them
stable. They are documented in the README's "Exit codes" table, which a test checks against this enum.
"""

from __future__ import annotations

import enum


class StopReason(enum.Enum):
    DONE = "done"
    MAX_ITERATIONS = "max_iterations"
    MAX_TIME = "max_time"
    BUDGET = "budget"
    NO_PROGRESS = "no_progress"
    STUCK = "stuck"
    AGENT_ERROR = "agent_error"
    BLOCKED = "blocked"
    INTERRUPTED = "interrupted"

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self]

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_EXIT_CODES = {
    StopReason.DONE: 0,
    StopReason.MAX_ITERATIONS: 10,
    StopReason.MAX_TIME: 11,
    StopReason.BUDGET: 12,
    StopReason.NO_PROGRESS: 13,
    StopReason.STUCK: 14,
    StopReason.AGENT_ERROR: 15,
    StopReason.BLOCKED: 16,
    StopReason.INTERRUPTED: 130,
}

_MEANINGS = {
    StopReason.DONE: "verified: gates green against the baseline, plan closed, real diff, clean audit",
    StopReason.MAX_ITERATIONS: "iteration cap reached",
    StopReason.MAX_TIME: "wall-clock cap reached",
    StopReason.BUDGET: "token or money cap reached (checked before and after every agent call)",
    StopReason.NO_PROGRESS: "no verified delta for K iterations in a row",
    StopReason.STUCK: "the same gate failure fingerprint K times in a row",
    StopReason.AGENT_ERROR: "the backend failed N times in a row (rate limits do not count), or once in a way no "
                            "retry can fix (its credentials were refused)",
    StopReason.BLOCKED: "guardrails refused to continue (sandbox unavailable, policy breach)",
    StopReason.INTERRUPTED: "the operator stopped it, or onloop was killed; resumable",
}

CONFIG_ERROR_EXIT_CODE = 2
