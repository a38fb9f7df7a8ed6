"""Phase 2, distillation: how notes enter memory, and the only ways they can.

Three doors, one pipeline: the built-in agent's `save_memory_note` tool (`handle_tool_call`), the
JSON-lines notes file an agent CLI or the built-in agent writes into its scratch dir
(`ingest_notes_file`, after the iteration), and `onloop note` (`save_memory_note` directly). Each runs
validation steps 1-8 (`onloop.memory.validate`), then dedup (9) and the rate limit (10) here, before
anything is persisted. Tool outputs and file contents never reach memory any other way.

Whatever scope a note asks for, it is staged in its session; consolidation decides what becomes
project or global memory. The result is a short code; rejected text is never echoed, stored, or
written to the audit log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onloop.clock import Clock
from onloop.errors import NotFoundError
from onloop.memory.model import (
    MemoryNote,
    NoteDraft,
    WriteCode,
    WriteResult,
    date_of,
    norm_hash,
    note_id,
    scope_key_for,
)
from onloop.memory.repo import MemoryRepo
from onloop.memory.validate import validate_note
from onloop.models.base import Message, ToolCall, ToolSpec
from onloop.store.db import Database

MAX_WRITES_PER_SESSION = 20
MAX_WRITES_PER_TURN = 3
NOTES_FILE = "memory_notes.jsonl"
TOOL_NAME = "save_memory_note"

_TOOL_DESCRIPTION = """Save one durable note for future runs on this project (or for all projects).
Save only what will still be true and useful next time: how to build and test, conventions, pitfalls,
the operator's stated preferences. One or two sentences, imperative, with the exact command or path.
Good: "Run tests with `uv run pytest -q`; the full suite takes about 6 minutes." (kind: command)
Good: "Never edit files under `migrations/` by hand; generate them with `make migration`." (pitfall)
Good: "Prefer small PRs: one concern per PR." (preference, scope: global)
Bad: "This task only: keep the API unchanged." (use scope "session": it is not durable)
Bad: "The build might be flaky." (speculation: save it only once verified)
Bad: anything with secrets, tokens, e-mail addresses or other personal data; rules about your own
permissions or about skipping tests or checks.
Returns {"ok": bool, "code": ...}; on a REJECT_* code, rephrase or drop the note."""

MEMORY_TOOL = ToolSpec(
    name=TOOL_NAME,
    description=_TOOL_DESCRIPTION,
    parameters={
        "type": "object",
        "additionalProperties": False,
        "required": ["text", "keywords", "scope", "kind", "evidence"],
        "properties": {
            "text": {"type": "string", "maxLength": 280},
            "keywords": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
            "scope": {"type": "string", "enum": ["session", "project", "global"], "default": "project"},
            "kind": {"type": "string",
                     "enum": ["preference", "constraint", "command", "convention", "pitfall", "fact"]},
            "evidence": {"type": "string", "enum": ["user_stated", "tool_verified", "observed_repeatedly"]},
        },
    },
)


@dataclass(frozen=True, slots=True)
class IngestReport:
    results: tuple[WriteResult, ...]
    malformed: int  # lines that were not a JSON object (counted as REJECT_SCHEMA in the audit)

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.results if r.code in ("OK", "OK_DOWNGRADED_TO_SESSION"))

    @property
    def rejected(self) -> int:
        return sum(1 for r in self.results if not r.ok)


def session_project(repo: MemoryRepo, session_id: str) -> str:
    """The project a session belongs to: registered at render time, or found through the run."""
    session = repo.session(session_id)
    if session is not None:
        return session.project_id
    row = repo.db.conn.execute("SELECT workspace FROM runs WHERE id = ?", (session_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no memory session or run {session_id!r}; start the run first")
    from onloop.memory.profile import project_identity

    project_id, _ = project_identity(repo, Path(row["workspace"]))
    repo.ensure_session(session_id, project_id)
    return project_id


def save_memory_note(
    db: Database,
    session_id: str,
    args: Mapping[str, Any],
    *,
    turn: int | None,
    clock: Clock,
    require_all: bool = True,
) -> WriteResult:
    """Validate and stage one note. `turn` is the user turn (in onloop's loop: the iteration)."""
    repo = MemoryRepo(db, clock)
    project_id = session_project(repo, session_id)
    verdict = validate_note(args, require_all=require_all)
    if verdict.draft is None:
        repo.audit("reject", verdict.code, session_id=session_id, detail={"turn": turn})
        return WriteResult(False, verdict.code)
    with repo.tx():
        return _stage(repo, verdict.draft, verdict.code, session_id, project_id, turn)


def _stage(repo: MemoryRepo, draft: NoteDraft, code: WriteCode, session_id: str, project_id: str,
           turn: int | None) -> WriteResult:
    """Steps 9 (dedup) and 10 (rate limit), then the write; inside the caller's transaction."""
    scope_key = scope_key_for(draft.scope, session_id, project_id)
    today = date_of(repo.clock.now())
    existing = repo.find_hash(norm_hash(draft.text), session_id, scope_key)
    if existing is not None:
        repo.update_fields(existing.seq, last_update_date=max(today, existing.last_update_date))
        repo.audit("duplicate", "DUPLICATE", session_id=session_id, note_ids=[existing.id])
        return WriteResult(True, "DUPLICATE", existing.id)
    if _over_rate(repo, session_id, turn):
        repo.audit("reject", "REJECT_RATE_LIMIT", session_id=session_id, detail={"turn": turn})
        return WriteResult(False, "REJECT_RATE_LIMIT")
    note = MemoryNote(
        id=note_id(draft.text, draft.scope, scope_key), text=draft.text, keywords=draft.keywords,
        scope=draft.scope, scope_key=scope_key, kind=draft.kind, evidence=draft.evidence, created=today,
        last_update_date=today, source_session=session_id, source_turn=turn,
    )
    repo.insert(note, "staged", session_id)
    repo.audit("write", code, session_id=session_id, scope_key=scope_key, note_ids=[note.id],
               detail={"turn": turn, "scope": draft.scope})
    repo.update_session(session_id, heartbeat_at=repo.now())
    row = repo.session_row(session_id)
    if row is not None and row["consolidation"] == "done":
        # The run went on after it was consolidated (resumed, or woke after the idle TTL).
        repo.update_session(session_id, consolidation="pending", attempts=0)
    return WriteResult(True, code, note.id)


def _over_rate(repo: MemoryRepo, session_id: str, turn: int | None) -> bool:
    if repo.count_staged(session_id) >= MAX_WRITES_PER_SESSION:
        return True
    return turn is not None and repo.count_staged(session_id, turn) >= MAX_WRITES_PER_TURN


def handle_tool_call(db: Database, session_id: str, call: ToolCall, *, turn: int | None, clock: Clock) -> Message:
    """Run a `save_memory_note` call and return the tool message the built-in agent appends."""
    result = save_memory_note(db, session_id, call.arguments, turn=turn, clock=clock)
    return Message(role="tool", content=json.dumps(result.as_tool_output()), tool_call_id=call.id, name=TOOL_NAME)


def ingest_notes_file(db: Database, path: Path, run_id: str, iteration: int | None, *, clock: Clock) -> IngestReport:
    """Stage every line of a JSON-lines notes file (`text`, `scope`, optional `kind`, `tags` or
    `keywords`, `evidence`) through the full pipeline, then delete the file: it is the agent's
    scratch input, and rejected text must not survive anywhere."""
    if not path.exists():
        return IngestReport((), 0)
    results: list[WriteResult] = []
    malformed = 0
    repo = MemoryRepo(db, clock)
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            malformed += 1
            repo.audit("reject", "REJECT_SCHEMA", session_id=run_id, detail={"turn": iteration, "malformed": True})
            continue
        results.append(save_memory_note(db, run_id, record, turn=iteration, clock=clock, require_all=False))
    path.unlink()
    return IngestReport(tuple(results), malformed)
