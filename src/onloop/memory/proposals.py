"""Promotion into the profile: deterministic proposals, applied only with the operator's approval.

A note of kind `command` or `convention` whose keyword names a profile field (`test` -> `test_cmd`)
and whose command (its first code span) was confirmed in at least two distinct sessions (written or
re-written as a duplicate, per the audit log) becomes a *proposal*. Nothing changes until the operator
approves it (`approve`); the approved value is stored as an override that the profile merges, after
the same scrubbing as detected values. A model never writes the profile.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from onloop.clock import Clock
from onloop.errors import NotFoundError
from onloop.memory.repo import MemoryRepo
from onloop.store.db import Database

FIELD_BY_KEYWORD = {
    "test": "test_cmd", "tests": "test_cmd", "testing": "test_cmd",
    "lint": "lint_cmd", "linting": "lint_cmd",
    "build": "build_cmd",
    "typecheck": "typecheck_cmd", "types": "typecheck_cmd", "mypy": "typecheck_cmd",
}
MIN_SESSIONS = 2
_CODE = re.compile(r"`([^`\n]+)`")


@dataclass(frozen=True, slots=True)
class ProfileProposal:
    field: str
    value: str
    sessions: tuple[str, ...]
    note_ids: tuple[str, ...]


def _sessions_by_note(repo: MemoryRepo) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for row in repo.audit_rows("event IN ('write', 'duplicate') AND session_id IS NOT NULL"):
        for note_id in json.loads(row["note_ids_json"]):
            found.setdefault(note_id, set()).add(row["session_id"])
    return found


def profile_proposals(db: Database, clock: Clock, project_id: str) -> list[ProfileProposal]:
    """Proposals for `project_id`, ordered by field; values already approved are left out."""
    repo = MemoryRepo(db, clock)
    sessions = _sessions_by_note(repo)
    groups: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    notes = repo.listing("scope = 'project' AND scope_key = ? AND kind IN ('command', 'convention') "
                         "AND status IN ('staged', 'active', 'consumed')", [project_id])
    for note in notes:
        field = next((FIELD_BY_KEYWORD[k] for k in note.keywords if k in FIELD_BY_KEYWORD), None)
        code = _CODE.search(note.text)
        if field is None or code is None:
            continue
        seen, ids = groups.setdefault((field, code.group(1).strip()), (set(), set()))
        seen.update(sessions.get(note.id, set()))
        ids.add(note.id)
    approved = overrides(db, project_id)
    return [
        ProfileProposal(field, value, tuple(sorted(seen)), tuple(sorted(ids)))
        for (field, value), (seen, ids) in sorted(groups.items())
        if len(seen) >= MIN_SESSIONS and approved.get(field) != value
    ]


def approve(db: Database, clock: Clock, project_id: str, field: str, value: str) -> ProfileProposal:
    """Apply one current proposal as a profile override (the operator's decision, audited)."""
    match = next((p for p in profile_proposals(db, clock, project_id) if (p.field, p.value) == (field, value)), None)
    if match is None:
        raise NotFoundError(f"no profile proposal {field} = {value!r} for {project_id}; see `onloop memory proposals`")
    repo = MemoryRepo(db, clock)
    with repo.tx() as conn:
        conn.execute(
            "INSERT INTO memory_profile_overrides (project_id, field, value, note_ids_json, approved_at) "
            "VALUES (?,?,?,?,?) ON CONFLICT(project_id, field) DO UPDATE SET value = excluded.value, "
            "note_ids_json = excluded.note_ids_json, approved_at = excluded.approved_at",
            (project_id, field, value, json.dumps(list(match.note_ids)), repo.now()),
        )
        conn.execute("DELETE FROM memory_workspaces WHERE project_id = ?", (project_id,))  # re-render the profile
        repo.audit("operator", "PROFILE_APPROVE", scope_key=project_id, note_ids=list(match.note_ids),
                   detail={"field": field})
    return match


def overrides(db: Database, project_id: str) -> dict[str, str]:
    rows = db.conn.execute(
        "SELECT field, value FROM memory_profile_overrides WHERE project_id = ? ORDER BY field", (project_id,)
    ).fetchall()
    return {row["field"]: row["value"] for row in rows}
