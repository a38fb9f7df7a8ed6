"""The exception tree of onloop.

Three families, because each is handled differently by the caller::

    OnloopError
    ├── OperatorError            the operator's mistake: clear message, exit code 2
    │   ├── ConfigError          onloop.toml (or a policy) is wrong: names the key, what is allowed, where
    │   │   └── VisibilityError  a gate's or backend's program the sandbox cannot see (policy.visibility)
    │   ├── UsageError           a bad command line or argument
    │   └── NotFoundError        a run, iteration or file that does not exist
    ├── RunFailure               something broke while a run was going: carries run id and iteration
    │   ├── WorkspaceError       git refused or failed
    │   ├── BackendError         the agent backend could not be started or spoke nonsense
    │   ├── GateError            a gate could not be run at all (not: a gate that failed)
    │   └── StoreError           the state database is unusable
    ├── GuardrailError           the guardrails refuse to go on
    │   ├── SandboxUnavailable   the policy needs a sandbox and none works here
    │   └── PolicyBreach         an agent did what the policy forbids
    └── StopRun                  control flow: the loop stops with a StopReason (not a failure)

Nothing is swallowed silently: code that catches one of these either re-raises it, turns it into a
recorded incident or stop reason, or prints it for the operator.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onloop.loop.stop import StopReason


class OnloopError(Exception):
    """Root of every error onloop raises on purpose."""

    exit_code: int = 1


class OperatorError(OnloopError):
    """The operator asked for something wrong; tell them what to fix."""

    exit_code = 2


class ConfigError(OperatorError):
    """A configuration value is wrong. Says which key, what is allowed, and where it was read."""

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        allowed: Sequence[str] | str | None = None,
        path: Path | None = None,
        line: int | None = None,
    ) -> None:
        self.key = key
        self.allowed = allowed
        self.path = path
        self.line = line
        self.detail = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}"
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        text = where
        if self.key:
            text += f"{self.key}: "
        text += self.detail
        if self.allowed:
            allowed = self.allowed if isinstance(self.allowed, str) else ", ".join(self.allowed)
            text += f" (allowed: {allowed})"
        return text


class UsageError(OperatorError):
    """A bad command line or argument."""


class NotFoundError(OperatorError):
    """A run, iteration or file that does not exist."""


class RunFailure(OnloopError):
    """Something broke during a run. Carries where, so the operator can find the evidence."""

    def __init__(self, message: str, *, run_id: str | None = None, iteration: int | None = None) -> None:
        self.run_id = run_id
        self.iteration = iteration
        prefix = ""
        if run_id:
            prefix = f"run {run_id}"
            if iteration is not None:
                prefix += f" iteration {iteration}"
            prefix += ": "
        super().__init__(prefix + message)


class WorkspaceError(RunFailure):
    """git refused or failed."""


class BackendError(RunFailure):
    """The agent backend could not be started or produced output onloop cannot read."""


class GateError(RunFailure):
    """A gate could not be run at all (a missing binary, a broken command); not a failing gate."""


class StoreError(RunFailure):
    """The state database is unusable."""


class GuardrailError(OnloopError):
    """The guardrails refuse to go on. Maps to the `blocked` stop reason."""

    exit_code = 16


class SandboxUnavailable(GuardrailError):
    """The policy requires a sandbox and none works on this machine."""


class PolicyBreach(GuardrailError):
    """An agent did what the policy forbids."""


class StopRun(OnloopError):
    """Control flow: the loop stops with a reason. Not a failure in itself."""

    def __init__(self, reason: StopReason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        self.exit_code = reason.exit_code
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
