"""What both detectors hand back: a `ReviewFinding`, and the one way its text is shortened and scrubbed.

The value lives here, below both detectors, so that `expectations` and `suspicious` share it without
importing each other or the package that re-exports it. Every excerpt and every evidence line goes
through `one_line`, which scrubs secrets before it cuts (a cut secret would no longer match the
scrubber), so nothing that leaves the package can carry a secret. A file that produces more than
`MAX_REPORTED` findings is a rewrite, obvious to the reviewer without a finding per line: the
detectors stop there and add one summary line instead (`past_limit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from onloop.policy.secrets import scrub

FindingKind = Literal["expectation_changed", "suspicious_code"]


@dataclass(frozen=True, slots=True)
class ReviewFinding:
    """Why a run needs a human: one checkable line, with the short excerpts the reviewer compares."""

    kind: FindingKind
    path: str
    evidence: str
    before: str = ""
    after: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.evidence}"


_EXCERPT = 160
EVIDENCE = 320
MAX_REPORTED = 100  # findings per file; past that a rewrite is obvious and one summary line says so


def one_line(text: str, limit: int = _EXCERPT) -> str:
    """`text` flattened to one line, scrubbed, then shortened (scrub first: a cut secret is missed)."""
    flat = scrub(" ".join(text.split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def past_limit(kind: FindingKind, path: str, count: int, what: str) -> list[ReviewFinding]:
    """The summary line for the `count - MAX_REPORTED` findings of `what` not reported one by one."""
    if count <= MAX_REPORTED:
        return []
    return [ReviewFinding(kind, path, f"... and {count - MAX_REPORTED} more {what}")]
