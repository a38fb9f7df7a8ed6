"""A consolidation plan: what happens to every note of one target scope, and how it is applied.

Both the model's validated ops (`onloop.memory.ops`) and the deterministic fallback
(`onloop.memory.fallback`) produce a `Plan`; only `apply_plan` writes, inside the transaction that
checked the scope's version. Keeping the two producers behind one value makes "every input accounted
for exactly once" checkable (`Plan.accounted`) whichever produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from onloop.memory.model import MemoryNote, norm_hash
from onloop.memory.repo import MemoryRepo

MAX_ACTIVE_PER_SCOPE = 50


@dataclass(frozen=True, slots=True)
class AuditOp:
    op: str  # KEEP | ADD | MERGE | SUPERSEDE | DROP | INVALIDATE | DEDUP | APPEND | REPLACE | CAPACITY
    note_ids: tuple[str, ...]
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """Mutable while it is built, then applied once."""

    target_key: str
    insert: list[MemoryNote] = field(default_factory=list)  # new active notes in the target scope
    archive: list[tuple[MemoryNote, str]] = field(default_factory=list)  # existing notes, with reason
    consume: list[tuple[MemoryNote, str]] = field(default_factory=list)  # session notes applied
    drop: list[tuple[MemoryNote, str]] = field(default_factory=list)  # session notes not applied
    refresh: list[tuple[MemoryNote, str]] = field(default_factory=list)  # (note, new last_update_date)
    audit: list[AuditOp] = field(default_factory=list)

    def accounted(self) -> set[int]:
        """Seqs of the session notes this plan disposes of (each must appear exactly once)."""
        return {n.seq for n, _ in self.consume} | {n.seq for n, _ in self.drop}


def apply_plan(repo: MemoryRepo, plan: Plan, today: str, session_id: str) -> list[MemoryNote]:
    """Write the plan (inside the caller's transaction) and return the notes it inserted."""
    for note, reason in plan.archive:
        repo.set_status([note.seq], "archived", reason, today)
    for note, reason in plan.consume:
        repo.set_status([note.seq], "consumed", reason, None)
    for note, reason in plan.drop:
        repo.set_status([note.seq], "dropped", reason, None)
    for note, when in plan.refresh:
        repo.update_fields(note.seq, last_update_date=max(when, note.last_update_date))
    inserted = []
    live_hashes = {norm_hash(n.text) for n in repo.active([plan.target_key])}
    for note in plan.insert:
        if norm_hash(note.text) in live_hashes:
            continue  # an op produced a note that already exists: keep one
        live_hashes.add(norm_hash(note.text))
        inserted.append(repo.insert(note, "active"))
    for audit in plan.audit:
        repo.audit("op", audit.op, session_id=session_id, scope_key=plan.target_key,
                   note_ids=list(audit.note_ids), detail=audit.detail or None)
    enforce_capacity(repo, plan.target_key, today, session_id)
    return inserted


def enforce_capacity(repo: MemoryRepo, scope_key: str, today: str, session_id: str) -> None:
    """Above the cap, archive the oldest non-pinned notes with reason `capacity`."""
    active = repo.active([scope_key])
    excess = len(active) - MAX_ACTIVE_PER_SCOPE
    if excess <= 0:
        return
    victims = sorted((n for n in active if not n.pinned), key=lambda n: (n.last_update_date, n.seq))[:excess]
    repo.set_status([n.seq for n in victims], "archived", "capacity", today)
    repo.audit("op", "CAPACITY", session_id=session_id, scope_key=scope_key, note_ids=[n.id for n in victims])
