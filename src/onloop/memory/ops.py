"""The consolidation model's contract: a list of operations, checked by code before anything is applied.

The model sees short aliases (`G1` for existing notes, `S1` for session notes) and answers with ops
(KEEP, ADD, MERGE, SUPERSEDE, DROP, INVALIDATE), never a rewritten list, so that these can be verified:
- every alias appears in exactly one disposition, and no unknown alias appears;
- new text passes validators 1-8 again, and every content word of it occurs in its sources
  (non-invention), and its keywords are a subset of the sources' keywords;
- dates are ours (the max of the sources), not the model's;
- a superseding note is not older; on a tie a session note wins;
- pinned notes can only be kept;
- at most max(2, 20%) of the existing notes are removed per run (`OverPruning`, which also flags the
  session for review).
Any failure raises `OpsRejected` with a short reason code; the caller falls back to the deterministic
plan. The model's text is never echoed into the audit log, only the codes and the aliases' note ids.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from onloop.memory.fallback import promote
from onloop.memory.model import Kind, MemoryNote, NoteDraft, Scope, note_id
from onloop.memory.plan import AuditOp, Plan
from onloop.memory.validate import validate_draft


class OpsRejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OverPruning(OpsRejected):
    pass


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class KeepOp(_Op):
    op: Literal["KEEP"]
    id: str


class AddOp(_Op):
    op: Literal["ADD", "MERGE"]
    from_: list[str] = Field(alias="from", min_length=1)
    text: str
    keywords: list[str] = Field(default_factory=list)
    kind: Kind | None = None


class SupersedeOp(_Op):
    op: Literal["SUPERSEDE"]
    old: str
    by: str
    reason: str = ""


class DropOp(_Op):
    op: Literal["DROP", "INVALIDATE"]
    id: str
    reason: str = ""


AnyOp = Annotated[KeepOp | AddOp | SupersedeOp | DropOp, Field(discriminator="op")]


class OpsDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ops: list[AnyOp]


OPS_SCHEMA = OpsDoc.model_json_schema(by_alias=True)
_OPS = TypeAdapter(OpsDoc)
_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$")
_TOKEN = re.compile(r"[a-z0-9](?:[a-z0-9_.\-/]*[a-z0-9])?")
STOP_WORDS = frozenset(
    [
        "about", "above", "after", "again", "against", "also", "always", "because", "been", "before",
        "being", "below", "between", "both", "cannot", "could", "does", "doing", "down", "during", "each",
        "every", "from", "further", "have", "having", "here", "into", "itself", "just", "more", "most",
        "must", "only", "other", "over", "same", "should", "some", "such", "than", "that", "their", "them",
        "then", "there", "these", "they", "this", "those", "through", "under", "until", "very", "were",
        "what", "when", "where", "which", "while", "will", "with", "would", "your", "instead"
    ]
)
CANONICAL_WORDS = frozenset({"prefers", "prefer", "avoid", "use", "run", "always", "never", "before", "after"})


def parse_ops(text: str) -> OpsDoc:
    try:
        return _OPS.validate_python(json.loads(_FENCE.sub("", text)))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise OpsRejected("BAD_JSON") from exc


def content_tokens(text: str) -> set[str]:
    words = _TOKEN.findall(text.lower().replace("`", " "))
    return {w for w in words if len(w) >= 4 and w not in STOP_WORDS}


def all_tokens(texts: Sequence[str]) -> set[str]:
    return {w for text in texts for w in _TOKEN.findall(text.lower().replace("`", " "))}


@dataclass
class OpsContext:
    scope: Scope
    target_key: str
    aliases: dict[str, MemoryNote]  # "G1" / "S1" -> note
    today: str

    def is_session(self, alias: str) -> bool:
        return alias.startswith("S")


def alias_map(existing: Sequence[MemoryNote], session_notes: Sequence[MemoryNote]) -> dict[str, MemoryNote]:
    aliases = {f"G{i}": n for i, n in enumerate(sorted(existing, key=lambda n: n.seq), start=1)}
    aliases.update({f"S{i}": n for i, n in enumerate(sorted(session_notes, key=lambda n: n.seq), start=1)})
    return aliases


def check_dispositions(doc: OpsDoc, aliases: dict[str, MemoryNote]) -> None:
    seen: Counter[str] = Counter()
    superseders: set[str] = set()
    for op in doc.ops:
        if isinstance(op, KeepOp | DropOp):
            seen[op.id] += 1
        elif isinstance(op, AddOp):
            seen.update(op.from_)
        else:
            seen[op.old] += 1
            superseders.add(op.by)  # one note may supersede several; it is still one disposition
    seen.update(superseders)
    if set(seen) - set(aliases):
        raise OpsRejected("UNKNOWN_ID")
    if any(count > 1 for count in seen.values()):
        raise OpsRejected("DOUBLE_DISPOSITION")
    if set(aliases) - set(seen):
        raise OpsRejected("MISSING_DISPOSITION")


def check_pruning(doc: OpsDoc, ctx: OpsContext) -> None:
    existing = sum(1 for a in ctx.aliases if not ctx.is_session(a))
    removed = sum(
        1
        for op in doc.ops
        if (isinstance(op, DropOp) and op.op == "INVALIDATE")
        or (isinstance(op, SupersedeOp) and not ctx.is_session(op.old))
    )
    if removed > max(2, existing // 5):
        raise OverPruning("OVER_PRUNE")


def plan_from_ops(doc: OpsDoc, ctx: OpsContext) -> Plan:
    """Validate every op and turn them into a plan, or raise OpsRejected."""
    check_dispositions(doc, ctx.aliases)
    check_pruning(doc, ctx)
    plan = Plan(ctx.target_key)
    promoted: dict[str, MemoryNote] = {}
    for op in doc.ops:
        if isinstance(op, KeepOp):
            _keep(plan, ctx, op.id, promoted)
        elif isinstance(op, AddOp):
            _add(plan, ctx, op)
        elif isinstance(op, SupersedeOp):
            _supersede(plan, ctx, op, promoted)
        else:
            _drop(plan, ctx, op)
    return plan


def _keep(plan: Plan, ctx: OpsContext, alias: str, promoted: dict[str, MemoryNote]) -> MemoryNote:
    note = ctx.aliases[alias]
    if not ctx.is_session(alias):
        plan.audit.append(AuditOp("KEEP", (note.id,)))
        return note
    if alias not in promoted:
        new = promote(note, ctx.scope, ctx.target_key)
        promoted[alias] = new
        plan.insert.append(new)
        plan.consume.append((note, f"applied_as:{new.id}"))
        plan.audit.append(AuditOp("KEEP", (note.id, new.id)))
    return promoted[alias]


def _add(plan: Plan, ctx: OpsContext, op: AddOp) -> None:
    sources = [ctx.aliases[a] for a in op.from_]
    if op.op == "ADD" and not all(ctx.is_session(a) for a in op.from_):
        raise OpsRejected("ADD_FROM_EXISTING")
    if any(n.pinned for n in sources):
        raise OpsRejected("PINNED_NOT_KEPT")
    new = _new_note(ctx, op, sources)
    for alias, source in zip(op.from_, sources, strict=True):
        if ctx.is_session(alias):
            plan.consume.append((source, f"merged_into:{new.id}"))
        else:
            plan.archive.append((source, f"merged_into:{new.id}"))
    plan.insert.append(new)
    plan.audit.append(AuditOp(op.op, (*(s.id for s in sources), new.id)))


def _new_note(ctx: OpsContext, op: AddOp, sources: Sequence[MemoryNote]) -> MemoryNote:
    newest = max(sources, key=lambda n: (n.last_update_date, n.seq))
    union_keywords = {k for n in sources for k in n.keywords}
    keywords = tuple(op.keywords) if op.keywords else newest.keywords
    verdict = validate_draft(NoteDraft(op.text, keywords, ctx.scope, op.kind or newest.kind, newest.evidence))
    if verdict.draft is None:
        raise OpsRejected(f"UNSAFE_TEXT:{verdict.code}")
    if verdict.code != "OK":
        raise OpsRejected("EPHEMERAL_OUTPUT")
    if not set(verdict.draft.keywords) <= union_keywords:
        raise OpsRejected("INVENTED_KEYWORD")
    invented = content_tokens(verdict.draft.text) - all_tokens([n.text for n in sources]) - CANONICAL_WORDS
    if invented:
        raise OpsRejected("INVENTED_CONTENT")
    draft = verdict.draft
    return MemoryNote(
        id=note_id(draft.text, ctx.scope, ctx.target_key), text=draft.text, keywords=draft.keywords,
        scope=ctx.scope, scope_key=ctx.target_key, kind=draft.kind, evidence=draft.evidence,
        created=min(n.created for n in sources), last_update_date=newest.last_update_date,
        source_session=newest.source_session, source_turn=newest.source_turn,
        sources=tuple(n.id for n in sources),
    )


def _supersede(plan: Plan, ctx: OpsContext, op: SupersedeOp, promoted: dict[str, MemoryNote]) -> None:
    old, by = ctx.aliases[op.old], ctx.aliases[op.by]
    if old.pinned:
        raise OpsRejected("PINNED_NOT_KEPT")
    if by.last_update_date < old.last_update_date:
        raise OpsRejected("SUPERSEDED_BY_OLDER")
    if by.last_update_date == old.last_update_date and not _tie_ok(ctx, op.old, op.by):
        raise OpsRejected("TIE_SESSION_MUST_WIN")
    winner = _keep(plan, ctx, op.by, promoted) if ctx.is_session(op.by) else by
    if ctx.is_session(op.old):
        plan.drop.append((old, f"superseded_by:{winner.id}"))
    else:
        plan.archive.append((old, f"superseded_by:{winner.id}"))
    plan.audit.append(AuditOp("SUPERSEDE", (old.id, winner.id)))


def _tie_ok(ctx: OpsContext, old: str, by: str) -> bool:
    """On equal dates a session note wins over an existing one, and a later session note wins."""
    if ctx.is_session(old) and ctx.is_session(by):
        return ctx.aliases[by].seq > ctx.aliases[old].seq
    return not ctx.is_session(old)  # an existing note cannot beat a session note on a tie


def _drop(plan: Plan, ctx: OpsContext, op: DropOp) -> None:
    note = ctx.aliases[op.id]
    reason = _reason_code(op.reason)
    if op.op == "DROP":
        if not ctx.is_session(op.id):
            raise OpsRejected("DROP_EXISTING")
        plan.drop.append((note, reason))
    else:
        if ctx.is_session(op.id):
            raise OpsRejected("INVALIDATE_SESSION")
        if note.pinned:
            raise OpsRejected("PINNED_NOT_KEPT")
        plan.archive.append((note, reason))
    plan.audit.append(AuditOp(op.op, (note.id,), {"reason": reason}))


def _reason_code(reason: str) -> str:
    """Only a short code of the model's reason reaches the store (`duplicate_of:G2` -> `duplicate_of`)."""
    code = reason.split(":", 1)[0].strip().lower()
    return code if re.fullmatch(r"[a-z_]{1,32}", code) else "unspecified"
