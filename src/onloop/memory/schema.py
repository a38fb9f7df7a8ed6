"""Memory's tables in the state database.

The spec proposed one JSON file per scope plus an `audit.jsonl`; onloop already has a crash-safe
store, so memory lives there instead and keeps the same guarantees: a transaction (`BEGIN IMMEDIATE`)
is the per-scope lock, `memory_scopes.version` is the optimistic concurrency counter consolidation
checks before it commits, and nothing is ever deleted: forgotten, superseded and consumed notes stay
as rows with a status, for audit and undo.

- `memory_notes`: every note, staged (a session's staging area), active, archived, consumed or dropped.
  `seq` is the row order, which also orders notes staged within one session.
- `memory_scopes`: one row per project id or `global`: the version counter.
- `memory_workspaces`: the detected project identity and profile of a workspace path, cached with a
  fingerprint of the marker files so the per-iteration render does not spawn git.
- `memory_sessions`: one row per run: trimming state, consolidation state, lease and retries.
- `memory_audit`: every write, rejection (code only), consolidation op and injection (note ids only).
  It never holds note text, so nothing a validator refused can end up there.
"""

from __future__ import annotations

import sqlite3

from onloop.store.db import migration


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]


@migration("0100_memory")
def _memory(conn: sqlite3.Connection) -> None:
    # One execute per statement: `executescript` would COMMIT the migration's transaction halfway.
    for statement in _statements(_SCRIPT):
        conn.execute(statement)


_SCRIPT = """
        CREATE TABLE memory_notes (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL,
            status TEXT NOT NULL,             -- staged | active | archived | consumed | dropped
            scope TEXT NOT NULL,              -- session | project | global (for staged: the request)
            scope_key TEXT NOT NULL,
            session_id TEXT,                  -- the staging session (staged, consumed, dropped rows)
            norm_hash TEXT NOT NULL,
            text TEXT NOT NULL,
            keywords_json TEXT NOT NULL,
            kind TEXT NOT NULL,
            evidence TEXT NOT NULL,
            created TEXT NOT NULL,
            last_update_date TEXT NOT NULL,
            source_session TEXT NOT NULL,
            source_turn INTEGER,
            sources_json TEXT NOT NULL DEFAULT '[]',
            pinned INTEGER NOT NULL DEFAULT 0,
            invalidated_at TEXT,
            archive_reason TEXT
        );
        CREATE INDEX memory_notes_scope ON memory_notes(scope_key, status);
        CREATE INDEX memory_notes_session ON memory_notes(session_id, status);
        CREATE INDEX memory_notes_id ON memory_notes(id);
        CREATE TABLE memory_scopes (
            scope_key TEXT PRIMARY KEY,
            version INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE memory_workspaces (
            workspace TEXT PRIMARY KEY,
            project_id TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            profile_json TEXT NOT NULL,
            detected_at TEXT NOT NULL
        );
        CREATE TABLE memory_sessions (
            session_id TEXT PRIMARY KEY,
            project_id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            heartbeat_at TEXT NOT NULL,
            trimmed_turns_upto INTEGER NOT NULL DEFAULT -1,
            inject_session_block INTEGER NOT NULL DEFAULT 0,
            consolidation TEXT NOT NULL DEFAULT 'pending',   -- pending | running | done | failed
            lease_at TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            error TEXT,
            review_flag INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE memory_audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts TEXT NOT NULL,
            session_id TEXT,
            scope_key TEXT,
            event TEXT NOT NULL,              -- write | reject | duplicate | consolidate | op | inject | operator
            code TEXT NOT NULL,
            note_ids_json TEXT NOT NULL DEFAULT '[]',
            detail_json TEXT
        );
        CREATE INDEX memory_audit_session ON memory_audit(session_id, id);
"""


@migration("0101_memory_profile_overrides")
def _profile_overrides(conn: sqlite3.Connection) -> None:
    # Profile values the operator approved from repeatedly confirmed notes (the promotion rule); the
    # profile is otherwise detected from the repository and never written by a model.
    conn.execute(
        """
        CREATE TABLE memory_profile_overrides (
            project_id TEXT NOT NULL,
            field TEXT NOT NULL,
            value TEXT NOT NULL,
            note_ids_json TEXT NOT NULL,
            approved_at TEXT NOT NULL,
            PRIMARY KEY (project_id, field)
        )
        """
    )
