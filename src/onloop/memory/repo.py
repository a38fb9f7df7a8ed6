"""Memory's access to the state database: rows in, frozen notes out.

Every other memory module talks to SQLite through `MemoryRepo`, so the SQL lives in one place.
`tx()` is re-entrant: a caller can group several repo calls into one atomic unit (`BEGIN IMMEDIATE`,
which is also the per-scope write lock), and a repo call made alone still commits on its own.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import onloop.memory.schema  # noqa: F401 - registers memory's migrations before any store is opened
from onloop.clock import Clock, utc_iso
from onloop.memory.model import MemoryNote, SessionMemory, Status, is_valid_date, norm_hash
from onloop.store.db import Database

_NOTE_COLUMNS = (
    "seq, id, status, scope, scope_key, session_id, norm_hash, text, keywords_json, kind, evidence, "
    "created, last_update_date, source_session, source_turn, sources_json, pinned, invalidated_at, "
    "archive_reason"
)


def _note(row: sqlite3.Row) -> MemoryNote:
    return MemoryNote(
        id=row["id"],
        text=row["text"],
        keywords=tuple(json.loads(row["keywords_json"])),
        scope=row["scope"],
        scope_key=row["scope_key"],
        kind=row["kind"],
        evidence=row["evidence"],
        created=row["created"],
        last_update_date=row["last_update_date"],
        source_session=row["source_session"],
        source_turn=row["source_turn"],
        sources=tuple(json.loads(row["sources_json"])),
        pinned=bool(row["pinned"]),
        invalidated_at=row["invalidated_at"],
        seq=row["seq"],
        status=row["status"],
        archive_reason=row["archive_reason"],
    )


class MemoryRepo:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        conn = self.db.conn
        if conn.in_transaction:
            yield conn
            return
        with self.db.transaction() as inner:
            yield inner

    def now(self) -> str:
        return utc_iso(self.clock.now())

    # -- notes -------------------------------------------------------------------------------------

    def insert(self, note: MemoryNote, status: Status, session_id: str | None = None) -> MemoryNote:
        if not (is_valid_date(note.created) and is_valid_date(note.last_update_date)):
            raise ValueError(f"note dates must be YYYY-MM-DD, got {note.created!r} / {note.last_update_date!r}")
        with self.tx() as conn:
            cursor = conn.execute(
                f"INSERT INTO memory_notes ({_NOTE_COLUMNS}) VALUES (NULL,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    note.id, status, note.scope, note.scope_key, session_id, norm_hash(note.text),
                    note.text, json.dumps(list(note.keywords)), note.kind, note.evidence, note.created,
                    note.last_update_date, note.source_session, note.source_turn,
                    json.dumps(list(note.sources)), int(note.pinned), note.invalidated_at,
                    note.archive_reason,
                ),
            )
            seq = cast(int, cursor.lastrowid)
        return self.by_seq(seq)

    def by_seq(self, seq: int) -> MemoryNote:
        row = self.db.conn.execute(f"SELECT {_NOTE_COLUMNS} FROM memory_notes WHERE seq = ?", (seq,)).fetchone()
        return _note(row)

    def find(self, note_id: str) -> list[MemoryNote]:
        """Every row with this id (or id prefix of at least 4 chars), newest first."""
        rows = self.db.conn.execute(
            f"SELECT {_NOTE_COLUMNS} FROM memory_notes WHERE id = ? OR (length(?) >= 4 AND id LIKE ? || '%') "
            "ORDER BY seq DESC",
            (note_id, note_id, note_id),
        ).fetchall()
        return [_note(row) for row in rows]

    def active(self, scope_keys: Sequence[str]) -> list[MemoryNote]:
        marks = ",".join("?" * len(scope_keys))
        rows = self.db.conn.execute(
            f"SELECT {_NOTE_COLUMNS} FROM memory_notes WHERE status = 'active' AND scope_key IN ({marks}) "
            "ORDER BY seq",
            tuple(scope_keys),
        ).fetchall()
        return [_note(row) for row in rows]

    def top_active(self, scope_keys: Sequence[str], limit: int) -> list[MemoryNote]:
        """The first `limit` active notes in injection order (the same order as `render.select_notes`:
        pinned, newest date, project before global, id), so a render reads 6 rows, not 100."""
        marks = ",".join("?" * len(scope_keys))
        rows = self.db.conn.execute(
            f"SELECT {_NOTE_COLUMNS} FROM memory_notes WHERE status = 'active' AND scope_key IN ({marks}) "
            "ORDER BY pinned DESC, last_update_date DESC, scope = 'project' DESC, id ASC LIMIT ?",
            (*scope_keys, limit),
        ).fetchall()
        return [_note(row) for row in rows]

    def staged_upto(self, session_id: str, turn: int, limit: int) -> list[MemoryNote]:
        """The last `limit` notes staged in this session from turns up to `turn`, in store order."""
        rows = self.db.conn.execute(
            f"SELECT {_NOTE_COLUMNS} FROM memory_notes WHERE status = 'staged' AND session_id = ? "
            "AND source_turn IS NOT NULL AND source_turn <= ? ORDER BY seq DESC LIMIT ?",
            (session_id, turn, limit),
        ).fetchall()
        return [_note(row) for row in reversed(rows)]

    def staged(self, session_id: str) -> list[MemoryNote]:
        rows = self.db.conn.execute(
            f"SELECT {_NOTE_COLUMNS} FROM memory_notes WHERE status = 'staged' AND session_id = ? ORDER BY seq",
            (session_id,),
        ).fetchall()
        return [_note(row) for row in rows]

    def listing(self, where: str, params: Sequence[Any]) -> list[MemoryNote]:
        rows = self.db.conn.execute(
            f"SELECT {_NOTE_COLUMNS} FROM memory_notes WHERE {where} ORDER BY seq", tuple(params)
        ).fetchall()
        return [_note(row) for row in rows]

    def set_status(self, seqs: Iterable[int], status: Status, reason: str | None, invalidated_at: str | None) -> None:
        with self.tx() as conn:
            conn.executemany(
                "UPDATE memory_notes SET status = ?, archive_reason = ?, invalidated_at = ? WHERE seq = ?",
                [(status, reason, invalidated_at, seq) for seq in seqs],
            )

    def update_fields(self, seq: int, **fields: Any) -> None:
        allowed = {"last_update_date", "pinned"}
        assert set(fields) <= allowed, fields
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self.tx() as conn:
            conn.execute(f"UPDATE memory_notes SET {assignments} WHERE seq = ?", (*fields.values(), seq))

    def find_hash(self, digest: str, session_id: str, scope_key: str) -> MemoryNote | None:
        """A note with the same normalized text staged in this session or active in the target scope."""
        row = self.db.conn.execute(
            f"SELECT {_NOTE_COLUMNS} FROM memory_notes WHERE norm_hash = ? AND "
            "((status = 'staged' AND session_id = ?) OR (status = 'active' AND scope_key = ?)) "
            "ORDER BY seq LIMIT 1",
            (digest, session_id, scope_key),
        ).fetchone()
        return _note(row) if row else None

    def count_staged(self, session_id: str, turn: int | None = None) -> int:
        """Notes this session wrote (whatever became of them since): the rate limit's counter."""
        sql = "SELECT count(*) FROM memory_notes WHERE session_id = ? AND status IN ('staged','consumed','dropped')"
        params: tuple[Any, ...] = (session_id,)
        if turn is not None:
            sql += " AND source_turn = ?"
            params += (turn,)
        return int(self.db.conn.execute(sql, params).fetchone()[0])

    # -- scopes ------------------------------------------------------------------------------------

    def version(self, scope_key: str) -> int:
        row = self.db.conn.execute("SELECT version FROM memory_scopes WHERE scope_key = ?", (scope_key,)).fetchone()
        return int(row[0]) if row else 0

    def bump_version(self, scope_key: str) -> int:
        with self.tx() as conn:
            conn.execute(
                "INSERT INTO memory_scopes (scope_key, version) VALUES (?, 1) "
                "ON CONFLICT(scope_key) DO UPDATE SET version = version + 1",
                (scope_key,),
            )
        return self.version(scope_key)

    # -- sessions ----------------------------------------------------------------------------------

    def ensure_session(self, session_id: str, project_id: str) -> None:
        now = self.now()
        with self.tx() as conn:
            conn.execute(
                "INSERT INTO memory_sessions (session_id, project_id, created_at, heartbeat_at) VALUES (?,?,?,?) "
                "ON CONFLICT(session_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                (session_id, project_id, now, now),
            )

    def session(self, session_id: str) -> SessionMemory | None:
        row = self.db.conn.execute("SELECT * FROM memory_sessions WHERE session_id = ?", (session_id,)).fetchone()
        if row is None:
            return None
        return SessionMemory(
            session_id=row["session_id"],
            project_id=row["project_id"],
            trimmed_turns_upto=row["trimmed_turns_upto"],
            inject_session_block=bool(row["inject_session_block"]),
            consolidation=row["consolidation"],
            attempts=row["attempts"],
            error=row["error"],
            review_flag=bool(row["review_flag"]),
        )

    def session_row(self, session_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.conn.execute(
            "SELECT * FROM memory_sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        return row

    def update_session(self, session_id: str, **fields: Any) -> None:
        allowed = {"trimmed_turns_upto", "inject_session_block", "consolidation", "lease_at", "attempts",
                   "next_attempt_at", "error", "review_flag", "heartbeat_at"}
        assert set(fields) <= allowed, fields
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self.tx() as conn:
            conn.execute(
                f"UPDATE memory_sessions SET {assignments} WHERE session_id = ?", (*fields.values(), session_id)
            )

    def sessions_where(self, where: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        return list(self.db.conn.execute(f"SELECT * FROM memory_sessions WHERE {where}", tuple(params)))

    # -- audit -------------------------------------------------------------------------------------

    def audit(
        self,
        event: str,
        code: str,
        *,
        session_id: str | None = None,
        scope_key: str | None = None,
        note_ids: Sequence[str] = (),
        detail: dict[str, Any] | None = None,
    ) -> None:
        """One audit line: codes and note ids only, never note text."""
        with self.tx() as conn:
            conn.execute(
                "INSERT INTO memory_audit (ts, session_id, scope_key, event, code, note_ids_json, detail_json) "
                "VALUES (?,?,?,?,?,?,?)",
                (self.now(), session_id, scope_key, event, code, json.dumps(list(note_ids)),
                 json.dumps(detail, sort_keys=True) if detail else None),
            )

    def audit_rows(self, where: str = "1=1", params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return list(self.db.conn.execute(f"SELECT * FROM memory_audit WHERE {where} ORDER BY id", tuple(params)))
