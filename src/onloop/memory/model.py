"""The values of memory: notes, drafts, write results, and the small rules every module shares.

A note's id is content-addressed (`n_` + 12 hex chars of sha256 over normalized text, scope and scope
key), so the same sentence saved twice in the same scope is the same note, and a consolidation model
cannot invent a real id: it only ever sees short aliases (`G1`, `S1`). Dates are plain `YYYY-MM-DD`
strings, checked by regex *and* by `date.fromisoformat`, because a trailing `T...` once slipped through
a peer implementation and broke date ordering.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal, get_args

Scope = Literal["session", "project", "global"]
Kind = Literal["preference", "constraint", "command", "convention", "pitfall", "fact"]
# There is no "inferred" on purpose: a note must claim where it came from.
Evidence = Literal["user_stated", "tool_verified", "observed_repeatedly"]
Status = Literal["staged", "active", "archived", "consumed", "dropped"]
WriteCode = Literal[
    "OK",
    "OK_DOWNGRADED_TO_SESSION",
    "DUPLICATE",
    "REJECT_SCHEMA",
    "REJECT_PII",
    "REJECT_SECRET",
    "REJECT_INSTRUCTION",
    "REJECT_SPECULATION",
    "REJECT_NOT_ACTIONABLE",
    "REJECT_TOO_LONG",
    "REJECT_RATE_LIMIT",
]

SCOPES: tuple[Scope, ...] = get_args(Scope)
KINDS: tuple[Kind, ...] = get_args(Kind)
EVIDENCES: tuple[Evidence, ...] = get_args(Evidence)
REJECT_CODES: tuple[WriteCode, ...] = tuple(c for c in get_args(WriteCode) if c.startswith("REJECT_"))
GLOBAL_KEY = "global"
MAX_TEXT_CHARS = 280

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SPACES = re.compile(r"\s+")
_TRAILING_PUNCT = re.compile(r"[\s.!?;:,]+$")


@dataclass(frozen=True, slots=True)
class MemoryNote:
    id: str
    text: str
    keywords: tuple[str, ...]
    scope: Scope
    scope_key: str  # session id | project id | "global"
    kind: Kind
    evidence: Evidence
    created: str  # YYYY-MM-DD
    last_update_date: str  # YYYY-MM-DD
    source_session: str
    source_turn: int | None  # the user turn (for onloop's loop: the iteration) it came from
    sources: tuple[str, ...] = ()  # provenance of consolidated notes: the input note ids
    pinned: bool = False
    invalidated_at: str | None = None
    seq: int = 0  # row order in the store; orders notes staged within one session
    status: Status = "active"
    archive_reason: str | None = None


@dataclass(frozen=True, slots=True)
class NoteDraft:
    """A note as validated, before it has an id, dates and a home."""

    text: str
    keywords: tuple[str, ...]
    scope: Scope
    kind: Kind
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What the tool returns: a short code, never the rejected content."""

    ok: bool
    code: WriteCode
    note_id: str | None = None

    def as_tool_output(self) -> dict[str, object]:
        out: dict[str, object] = {"ok": self.ok, "code": self.code}
        if self.note_id:
            out["id"] = self.note_id
        return out


SaveResult = WriteResult


@dataclass(frozen=True, slots=True)
class SessionMemory:
    session_id: str
    project_id: str
    trimmed_turns_upto: int = -1
    inject_session_block: bool = False
    consolidation: Literal["pending", "running", "done", "failed"] = "pending"
    attempts: int = 0
    error: str | None = None
    review_flag: bool = False
    notes: tuple[MemoryNote, ...] = field(default=())


def normalize_text(text: str) -> str:
    """Casefold, collapse whitespace, strip trailing punctuation: the key of exact dedup."""
    return _TRAILING_PUNCT.sub("", _SPACES.sub(" ", text.casefold()).strip())


def norm_hash(text: str) -> str:
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()[:16]


def note_id(text: str, scope: Scope, scope_key: str) -> str:
    digest = hashlib.sha256((normalize_text(text) + scope + scope_key).encode("utf-8")).hexdigest()
    return "n_" + digest[:12]


def is_valid_date(value: str) -> bool:
    if not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def date_of(moment: datetime) -> str:
    """The UTC calendar date of an injected clock's `now()`, never with a time part."""
    return moment.date().isoformat() if moment.tzinfo is None else moment.astimezone(UTC).date().isoformat()


def estimate_tokens(text: str) -> int:
    """A cheap, deterministic token estimate (4 characters a token), the one context assembly uses."""
    return math.ceil(len(text) / 4)


def scope_key_for(scope: Scope, session_id: str, project_id: str) -> str:
    if scope == "session":
        return session_id
    if scope == "project":
        return project_id
    return GLOBAL_KEY
