"""The deterministic consolidation: used when the model fails, times out, returns bad JSON or cheats.

It is also the test oracle for the model path. Rules, in order, for each session note (oldest first):
1. same normalized text as a live note of the target scope: refresh that note's date, consume this one;
2. same (kind, primary keyword) as a live, unpinned note: the newer date wins, and on a tie the session
   note wins (a later session note beats an earlier one); the loser is archived (or dropped);
3. otherwise append.
It never sees session-scope notes (the pre-pass drops them), so it can never promote "this time" notes.
"""

from __future__ import annotations

from collections.abc import Sequence

from onloop.memory.model import MemoryNote, Scope, norm_hash, note_id
from onloop.memory.plan import AuditOp, Plan


def promote(note: MemoryNote, scope: Scope, scope_key: str) -> MemoryNote:
    """A session-staged note as a note of its target scope (new id, provenance kept)."""
    return MemoryNote(
        id=note_id(note.text, scope, scope_key), text=note.text, keywords=note.keywords, scope=scope,
        scope_key=scope_key, kind=note.kind, evidence=note.evidence, created=note.created,
        last_update_date=note.last_update_date, source_session=note.source_session,
        source_turn=note.source_turn, sources=(note.id,),
    )


def _primary(note: MemoryNote) -> tuple[str, str]:
    return (note.kind, note.keywords[0] if note.keywords else "")


def fallback_plan(
    scope: Scope, target_key: str, existing: Sequence[MemoryNote], session_notes: Sequence[MemoryNote]
) -> Plan:
    plan = Plan(target_key)
    live: list[MemoryNote] = list(existing)  # existing notes and the ones appended so far
    origin: dict[str, MemoryNote] = {}  # appended note id -> the session note it came from
    for staged in sorted(session_notes, key=lambda n: n.seq):
        twin = next((n for n in live if norm_hash(n.text) == norm_hash(staged.text)), None)
        if twin is not None:
            if twin.id not in origin:
                plan.refresh.append((twin, staged.last_update_date))
            plan.consume.append((staged, f"duplicate_of:{twin.id}"))
            plan.audit.append(AuditOp("DEDUP", (staged.id, twin.id)))
            continue
        rival = next((n for n in live if not n.pinned and _primary(n) == _primary(staged)), None)
        if rival is not None and rival.last_update_date > staged.last_update_date:
            plan.drop.append((staged, f"older_than:{rival.id}"))
            plan.audit.append(AuditOp("DROP", (staged.id,), {"reason": "older"}))
            continue
        new = promote(staged, scope, target_key)
        if rival is not None:
            _retire(plan, rival, origin, new.id)
            live.remove(rival)
            plan.audit.append(AuditOp("REPLACE", (rival.id, new.id)))
        else:
            plan.audit.append(AuditOp("APPEND", (staged.id, new.id)))
        live.append(new)
        origin[new.id] = staged
        plan.insert.append(new)
        plan.consume.append((staged, f"applied_as:{new.id}"))
    return plan


def _retire(plan: Plan, rival: MemoryNote, origin: dict[str, MemoryNote], winner: str) -> None:
    """Archive an existing note, or un-append one this plan added earlier (a later session note won)."""
    if rival.id not in origin:
        plan.archive.append((rival, f"superseded_by:{winner}"))
        return
    plan.insert.remove(rival)
    source = origin.pop(rival.id)
    plan.consume = [(n, r) for n, r in plan.consume if n.seq != source.seq]
    plan.drop.append((source, f"superseded_by:{winner}"))
