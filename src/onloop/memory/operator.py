"""What the operator can do to memory: see everything, pin, forget, edit, read the audit log.

The CLI (`onloop memory ...`) and the dashboard call these functions; no logic lives only in the CLI.
Nothing here destroys a note: `forget` archives it with `invalidated_at` (it is never injected again but
stays for audit and undo), `edit` archives the old version and writes a new one whose `sources` point
back. Every change bumps the scope's version, so a consolidation running at the same time re-reads
instead of overwriting the operator, and writes an `operator` audit line.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from onloop.clock import Clock
from onloop.errors import NotFoundError, UsageError
from onloop.memory.model import MemoryNote, NoteDraft, Scope, Status, WriteResult, date_of, note_id
from onloop.memory.repo import MemoryRepo
from onloop.memory.validate import validate_draft
from onloop.store.db import Database

_LIVE = ("active", "staged")


@dataclass(frozen=True, slots=True)
class NoteDetail:
    note: MemoryNote
    history: tuple[MemoryNote, ...]  # every row with this id, newest first
    audit: tuple[sqlite3.Row, ...]


def list_notes(
    db: Database, clock: Clock, *, scope: Scope | None = None, scope_key: str | None = None,
    include_archived: bool = False,
) -> list[MemoryNote]:
    """Active notes (and staged session notes), optionally archived ones too, in store order."""
    repo = MemoryRepo(db, clock)
    statuses = ("active", "staged", "archived", "consumed", "dropped") if include_archived else _LIVE
    where = f"status IN ({','.join('?' * len(statuses))})"
    params: list[object] = list(statuses)
    if scope is not None:
        where += " AND scope = ?"
        params.append(scope)
    if scope_key is not None:
        where += " AND (scope_key = ? OR session_id = ?)"
        params += [scope_key, scope_key]
    return repo.listing(where, params)


def resolve(repo: MemoryRepo, ref: str) -> MemoryNote:
    """The live note an id (or unique id prefix) names; the newest row when it has a history."""
    rows = repo.find(ref)
    if not rows:
        raise NotFoundError(f"no memory note {ref!r}; see `onloop memory list`")
    ids = {row.id for row in rows}
    if len(ids) > 1:
        raise UsageError(f"{ref!r} matches {len(ids)} notes; give more of the id")
    live = [row for row in rows if row.status in _LIVE]
    return live[0] if live else rows[0]


def show_note(db: Database, clock: Clock, ref: str) -> NoteDetail:
    repo = MemoryRepo(db, clock)
    note = resolve(repo, ref)
    history = tuple(repo.find(note.id))
    audit = tuple(repo.audit_rows("note_ids_json LIKE ?", (f'%"{note.id}"%',)))
    return NoteDetail(note, history, audit)


def set_pinned(db: Database, clock: Clock, ref: str, pinned: bool, scope: Scope | None = None) -> MemoryNote:
    repo = MemoryRepo(db, clock)
    with repo.tx():
        note = _live(repo, ref, scope)
        repo.update_fields(note.seq, pinned=int(pinned))
        repo.bump_version(note.scope_key)
        repo.audit("operator", "PIN" if pinned else "UNPIN", scope_key=note.scope_key, note_ids=[note.id])
    return repo.by_seq(note.seq)


def forget(db: Database, clock: Clock, ref: str, scope: Scope | None = None) -> MemoryNote:
    """Archive a note (never delete it): it is not injected or consolidated again."""
    repo = MemoryRepo(db, clock)
    with repo.tx():
        note = _live(repo, ref, scope)
        status: Status = "archived" if note.status == "active" else "dropped"
        repo.set_status([note.seq], status, "forgotten", date_of(clock.now()))
        repo.bump_version(note.scope_key)
        repo.audit("operator", "FORGET", scope_key=note.scope_key, note_ids=[note.id])
    return repo.by_seq(note.seq)


def edit(db: Database, clock: Clock, ref: str, text: str, scope: Scope | None = None) -> WriteResult:
    """Replace a note's text. The new text passes the same validators as any other write (an
    operator can paste a secret by mistake too); the old version is archived, not lost."""
    repo = MemoryRepo(db, clock)
    with repo.tx():
        old = _live(repo, ref, scope)
        verdict = validate_draft(NoteDraft(text, old.keywords, old.scope, old.kind, "user_stated"))
        if verdict.draft is None or verdict.code != "OK":
            code = verdict.code if verdict.draft is None else "OK_DOWNGRADED_TO_SESSION"
            repo.audit("operator", f"EDIT_{code}", scope_key=old.scope_key, note_ids=[old.id])
            return WriteResult(False, code)
        today = date_of(clock.now())
        new = MemoryNote(
            id=note_id(verdict.draft.text, old.scope, old.scope_key), text=verdict.draft.text,
            keywords=verdict.draft.keywords, scope=old.scope, scope_key=old.scope_key, kind=old.kind,
            evidence="user_stated", created=today, last_update_date=today, source_session=old.source_session,
            source_turn=old.source_turn, sources=(old.id,), pinned=old.pinned,
        )
        status: Status = "archived" if old.status == "active" else "dropped"
        repo.set_status([old.seq], status, f"edited_into:{new.id}", today)
        repo.insert(new, old.status, old.source_session if old.status == "staged" else None)
        repo.bump_version(old.scope_key)
        repo.audit("operator", "EDIT", scope_key=old.scope_key, note_ids=[old.id, new.id])
    return WriteResult(True, "OK", new.id)


def _live(repo: MemoryRepo, ref: str, scope: Scope | None) -> MemoryNote:
    note = resolve(repo, ref)
    if scope is not None and note.scope != scope:
        raise UsageError(f"note {note.id} is in scope {note.scope}, not {scope}")
    if note.status not in _LIVE:
        raise UsageError(f"note {note.id} is {note.status}; only active or staged notes can be changed")
    return note


def audit_log(db: Database, clock: Clock, *, session_id: str | None = None, limit: int = 200) -> list[sqlite3.Row]:
    repo = MemoryRepo(db, clock)
    rows = repo.audit_rows("session_id = ?", (session_id,)) if session_id else repo.audit_rows()
    return rows[-limit:]
