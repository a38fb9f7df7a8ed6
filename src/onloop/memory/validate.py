"""Steps 1 to 8 of the write pipeline: pure, ordered, stopping at the first rejection.

Everything that wants to become memory passes here: the built-in agent's `save_memory_note` calls,
the notes file an agent CLI writes, `onloop note`, the operator's `onloop memory edit`, and every ADD
or MERGE a consolidation model proposes. The model never validates itself; this code does.

Steps 9 (dedup) and 10 (rate limit) need the store and live in `onloop.memory.distill`.

| step | rule | result |
|---|---|---|
| 1 schema | types and enums; text stripped, non-empty, <= 280 chars, <= 2 sentences | REJECT_SCHEMA, REJECT_TOO_LONG |
| 2 keywords | normalized, 1..3, `^[a-z0-9_-]{2,24}$`, no dates or long numbers | REJECT_SCHEMA |
| 3 secrets | `onloop.memory.safety.find_secret` | REJECT_SECRET |
| 4 PII | `find_pii`; home paths rewritten to `~` | REJECT_PII |
| 5 instruction | aimed at the agent's authority, not at the project | REJECT_INSTRUCTION |
| 6 speculation | hedges, or a trailing question mark | REJECT_SPECULATION |
| 7 actionability | a prescriptive cue, or a project-specific anchor for facts | REJECT_NOT_ACTIONABLE |
| 8 durability | ephemeral markers downgrade the scope to session ("from now on" wins) | OK_DOWNGRADED_TO_SESSION |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from onloop.memory import safety
from onloop.memory.model import EVIDENCES, MAX_TEXT_CHARS, Evidence, Kind, NoteDraft, Scope, WriteCode

_SENTENCE_SPLIT = re.compile(r"[.!?]\s")
_KEYWORD = re.compile(r"^[a-z0-9_-]{2,24}$")
_KEYWORD_PII = re.compile(r"^(\d{4}-\d{2}-\d{2}|\d{7,})$")
_WORD = re.compile(r"[a-z0-9][a-z0-9_-]*")

_INSTRUCTION = (
    re.compile(r"(?i)\b(ignore|disregard|override)\b.{0,40}\b(instructions|rules|policy|system)\b"),
    re.compile(r"(?i)^(system|developer|assistant)\s*:"),
    re.compile(r"(?i)</?(system|instructions|memory_policy|memories|project_profile)>"),
    re.compile(r"(?i)\byou are (now )?\b"),
    re.compile(r"(?i)\b(grant|give)\b.{0,20}\b(permission|access|sudo|root)\b"),
    re.compile(r"(?i)\balways obey\b"),
    # Attacks on onloop's verification phrased as project facts (found by the red-team suite):
    # claiming completion early, a no-op "test command", scaring the agent off the suite, faking the plan.
    re.compile(r"(?i)\b(claim|declare|mark|report)\b.{0,40}\b(done|complete|completion|finished)\b"),
    re.compile(r"(?i)<onloop:done/>"),
    re.compile(r"(?i)\b(run|test)s?\b.{0,30}\bwith\s+`\s*(true|:|exit 0|echo\b[^`]*|/bin/true)\s*`"),
    re.compile(r"(?i)\b(never|don't|do not|stop)\s+(run|running|execute|executing)\b.{0,40}"
               r"\b(tests?|unittest|pytest|suite|gates?|checks?|linters?)\b"),
    re.compile(r"(?i)\b(delete|remove|drop)\b.{0,30}\b(plan items?|finished items|completed items|done items|"
               r"items instead|open items)\b"),
    re.compile(r"(?i)\b(don't|do not|never)\s+(update|edit|touch|check off)\b.{0,30}\b(implementation_plan|plan)\b"),
)
# "Skip the tests" is an attack on the back-pressure; "Never skip pre-commit hooks" protects it. The
# verb only counts when no negation sits right before it (at most one word in between).
_DISABLE = re.compile(r"(?i)\b(disable|skip|bypass|ignore)\b.{0,30}\b(tests?|ci|checks?|review|hooks?|safety)\b")
_NEGATED = re.compile(r"(?i)\b(never|not|don't|dont|avoid|no)\s+(?:\w+\s+)?$")

_HEDGE = re.compile(
    r"(?i)\b(maybe|might|perhaps|probably|possibly|presumably|apparently|i think|i guess|it seems|"
    r"seems to|not sure|could be|likely)\b"
)
_CUE = re.compile(
    r"(?i)\b(use|run|prefer|avoid|keep|put|call|set|pin|install|check)s?\b|"
    r"\b(never|always|do not|don't|must|before|after|when|if|instead)\b"
)
_CODE_SPAN = re.compile(r"`[^`\n]+`")
_ANCHOR = re.compile(
    r"`[^`\n]+`|"  # an identifier or command in backticks
    r"(?:^|[\s(])[\w.~-]*/[\w./-]+|"  # a path
    r"\b[\w-]+\.(?:py|pyi|toml|json|ya?ml|md|txt|cfg|ini|lock|js|mjs|ts|tsx|jsx|rs|go|sh|sql|c|h|cpp|java|kt|rb)\b|"
    r"\bv?\d+\.\d+(?:\.\d+)?\b|"  # a version
    r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b"  # a snake_case identifier
)
_BEFORE_SPECULATION = frozenset(
    {"REJECT_SCHEMA", "REJECT_TOO_LONG", "REJECT_SECRET", "REJECT_PII", "REJECT_INSTRUCTION"}
)
_LASTING = re.compile(r"(?i)\b(from now on|generally|in general|going forward)\b")
_EPHEMERAL = (
    re.compile(r"(?i)\bthis (time|task|run|pr|branch|session|ticket)\b"),
    re.compile(r"(?i)\b(for now|right now|today|tonight|tomorrow|currently|temporarily|this week)\b"),
    re.compile(r"\b\d{4}-\d{2}-\d{2}\b"),
    re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b"),  # a commit sha, not a word
    re.compile(r"#\d+\b"),
    re.compile(r"/tmp/"),
    re.compile(r"(?i)\bline \d+\b"),
)


class NoteArgs(BaseModel):
    """The arguments of `save_memory_note`, and of a line of the notes file (`tags` = `keywords`)."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    text: str
    keywords: list[str] | None = Field(None, validation_alias=AliasChoices("keywords", "tags"))
    scope: Scope = "project"
    kind: Kind | None = None
    evidence: Evidence | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of steps 1-8: a code, and the normalized draft when it passed."""

    code: WriteCode
    draft: NoteDraft | None = None

    @property
    def ok(self) -> bool:
        return self.draft is not None


def parse_args(raw: Mapping[str, Any], *, require_all: bool) -> NoteArgs | None:
    """The boundary: None when the arguments do not fit the schema (the caller says REJECT_SCHEMA)."""
    try:
        args = NoteArgs.model_validate(dict(raw))
    except (ValidationError, TypeError):
        return None
    if require_all and (args.keywords is None or args.kind is None or args.evidence is None):
        return None
    return args


def validate_note(raw: Mapping[str, Any], *, require_all: bool = True) -> Verdict:
    """Run steps 1-8 on raw arguments. `require_all=False` fills kind, evidence and keywords with
    deterministic defaults (for agent CLIs, whose notes only need `text` and `scope`)."""
    raw = dict(raw)
    # An evidence the schema does not know ("inferred", "guess") is speculation, reported at step 6
    # so that the earlier, more serious rejections (secrets, PII, instructions) still win.
    claimed = raw.get("evidence")
    speculative = isinstance(claimed, str) and claimed not in EVIDENCES
    if speculative:
        raw["evidence"] = "observed_repeatedly"
    args = parse_args(raw, require_all=require_all)
    if args is None:
        return Verdict("REJECT_SCHEMA")
    text = args.text.strip()
    kind: Kind = args.kind or ("command" if _CODE_SPAN.search(text) else "convention")
    keywords = args.keywords if args.keywords is not None else derive_keywords(text)
    verdict = validate_draft(
        NoteDraft(text, tuple(keywords), args.scope, kind, args.evidence or "observed_repeatedly")
    )
    if speculative and verdict.code not in _BEFORE_SPECULATION:
        return Verdict("REJECT_SPECULATION")
    return verdict


def validate_draft(draft: NoteDraft) -> Verdict:
    """Steps 1-8 on an already typed draft (also used for consolidation output and operator edits)."""
    text = draft.text.strip()
    code = _check_text_shape(text)
    if code:
        return Verdict(code)
    keywords = normalize_keywords(draft.keywords)
    if keywords is None:
        return Verdict("REJECT_SCHEMA")
    if safety.find_secret(text) or any(safety.find_secret(k) for k in keywords):
        return Verdict("REJECT_SECRET")
    if safety.find_pii(text):
        return Verdict("REJECT_PII")
    text = safety.rewrite_home_paths(text)
    for check in (_check_instruction, _check_speculation):
        code = check(text)
        if code:
            return Verdict(code)
    if not is_actionable(text, draft.kind):
        return Verdict("REJECT_NOT_ACTIONABLE")
    clean = replace(draft, text=text, keywords=keywords)
    if draft.scope != "session" and is_ephemeral(text):
        return Verdict("OK_DOWNGRADED_TO_SESSION", replace(clean, scope="session"))
    return Verdict("OK", clean)


def _check_text_shape(text: str) -> WriteCode | None:
    if not text:
        return "REJECT_SCHEMA"
    if len(text) > MAX_TEXT_CHARS:
        return "REJECT_TOO_LONG"
    sentences = [part for part in _SENTENCE_SPLIT.split(text) if part.strip()]
    if len(sentences) > 2:
        return "REJECT_TOO_LONG"
    return None


def normalize_keywords(raw: tuple[str, ...] | list[str]) -> tuple[str, ...] | None:
    """Lowercase, strip, dedup, drop malformed ones, cap at 3; None when none is left or one looks
    like personal data or a date (those are refused, not dropped)."""
    seen: list[str] = []
    for keyword in raw:
        value = keyword.strip().lower()
        if _KEYWORD_PII.match(value) or safety.find_pii(value):
            return None
        if _KEYWORD.match(value) and value not in seen:
            seen.append(value)
    return tuple(seen[:3]) or None


_STOP = frozenset(
    [
        "the", "and", "for", "with", "from", "that", "this", "into", "when", "then", "than", "your", "you",
        "use", "run", "not", "don't", "never", "always", "must", "before", "after", "instead", "keep",
        "should", "does", "have", "will", "onto", "over", "under", "each", "every", "only", "also", "just"
    ]
)


def derive_keywords(text: str) -> list[str]:
    """Up to three topic words from the text, for notes that came without keywords."""
    words = [w.strip("_-") for w in _WORD.findall(text.lower().replace("`", " "))]
    picked: list[str] = []
    for word in words:
        if len(word) >= 3 and word not in _STOP and _KEYWORD.match(word) and word not in picked:
            picked.append(word)
    return picked[:3]


def instruction_code(text: str) -> WriteCode | None:
    """REJECT_INSTRUCTION when `text` is aimed at the agent's authority or at onloop's verification."""
    return _check_instruction(text)


def _check_instruction(text: str) -> WriteCode | None:
    if any(pattern.search(text) for pattern in _INSTRUCTION):
        return "REJECT_INSTRUCTION"
    for match in _DISABLE.finditer(text):
        if not _NEGATED.search(text[: match.start()]):
            return "REJECT_INSTRUCTION"
    return None


def _check_speculation(text: str) -> WriteCode | None:
    if _HEDGE.search(text) or text.rstrip().endswith("?"):
        return "REJECT_SPECULATION"
    return None


def is_actionable(text: str, kind: Kind) -> bool:
    if kind == "fact":
        return bool(_ANCHOR.search(text))
    if kind == "command" and _CODE_SPAN.search(text):
        return True
    return bool(_CUE.search(text))


def is_ephemeral(text: str) -> bool:
    """True when the note is about this run only. A lasting phrase ("from now on") overrides."""
    if _LASTING.search(text):
        return False
    return any(pattern.search(text) for pattern in _EPHEMERAL)
