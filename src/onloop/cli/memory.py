"""`onloop memory ...` (the operator's view and control of memory) and `onloop note` (an agent's door).

Thin commands over `onloop.memory.operator` and `onloop.memory.distill`. `onloop note` is what an agent
CLI runs to save a note: it reads the run and iteration from ONLOOP_RUN_ID and ONLOOP_ITERATION. When
ONLOOP_NOTES_FILE is set (the sandbox may not let the agent write the state database), a note that
passes validation steps 1-8 is appended to that file, which onloop ingests after the iteration through
the full pipeline; otherwise the note goes straight through `save_memory_note`. Either way the agent
gets a code back, never its rejected text.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, cast

import typer

from onloop.clock import SystemClock
from onloop.errors import UsageError
from onloop.memory import operator
from onloop.memory.distill import save_memory_note
from onloop.memory.model import MemoryNote, Scope, WriteResult
from onloop.memory.profile import project_identity
from onloop.memory.proposals import approve, profile_proposals
from onloop.memory.repo import MemoryRepo
from onloop.memory.validate import validate_note
from onloop.store.db import Database

memory_app = typer.Typer(help="See and control what agents remember.", no_args_is_help=True)

ScopeOpt = Annotated[str | None, typer.Option("--scope", help="project, global or session")]


def _scope(value: str | None) -> Scope | None:
    if value is None:
        return None
    if value not in ("session", "project", "global"):
        raise UsageError(f"--scope must be session, project or global, not {value!r}")
    return cast(Scope, value)  # checked against the Literal's values just above


def _line(note: MemoryNote) -> str:
    pin = " [pinned]" if note.pinned else ""
    reason = f": {note.archive_reason}" if note.archive_reason else ""
    state = "" if note.status == "active" else f" ({note.status}{reason})"
    return (f"{note.id}  {note.scope:<7} {note.kind:<10} {note.last_update_date}{pin}{state}\n"
            f"    {note.text}  [kw: {', '.join(note.keywords)}]")


@memory_app.command("list")
def list_cmd(scope: ScopeOpt = None, all_: Annotated[bool, typer.Option("--all", help="include archived")] = False,
             key: Annotated[str | None, typer.Option("--key", help="a project id or run id")] = None) -> None:
    """List active and staged notes (with --all: archived ones too)."""
    notes = operator.list_notes(Database.open_default(), SystemClock(), scope=_scope(scope), scope_key=key,
                                include_archived=all_)
    for note in notes:
        typer.echo(_line(note))
    if not notes:
        typer.echo("(no notes)")


@memory_app.command("show")
def show_cmd(note_id: str, scope: ScopeOpt = None) -> None:
    """Show one note, its history and its audit lines."""
    detail = operator.show_note(Database.open_default(), SystemClock(), note_id)
    if scope is not None and detail.note.scope != _scope(scope):
        raise UsageError(f"note {detail.note.id} is in scope {detail.note.scope}, not {scope}")
    typer.echo(_line(detail.note))
    typer.echo(f"    evidence: {detail.note.evidence}; created {detail.note.created}; "
               f"from session {detail.note.source_session}, turn {detail.note.source_turn}")
    if detail.note.sources:
        typer.echo(f"    sources: {', '.join(detail.note.sources)}")
    for row in detail.audit:
        typer.echo(f"  {row['ts']}  {row['event']:<12} {row['code']}")


@memory_app.command("pin")
def pin_cmd(note_id: str, scope: ScopeOpt = None) -> None:
    """Pin a note: always injected, never pruned by consolidation."""
    typer.echo(_line(operator.set_pinned(Database.open_default(), SystemClock(), note_id, True, _scope(scope))))


@memory_app.command("unpin")
def unpin_cmd(note_id: str, scope: ScopeOpt = None) -> None:
    """Unpin a note."""
    typer.echo(_line(operator.set_pinned(Database.open_default(), SystemClock(), note_id, False, _scope(scope))))


@memory_app.command("forget")
def forget_cmd(note_id: str, scope: ScopeOpt = None) -> None:
    """Archive a note: never injected again, kept for audit."""
    typer.echo(_line(operator.forget(Database.open_default(), SystemClock(), note_id, _scope(scope))))


@memory_app.command("edit")
def edit_cmd(note_id: str, text: str, scope: ScopeOpt = None) -> None:
    """Replace a note's text (validated like any write; the old version is archived)."""
    result = operator.edit(Database.open_default(), SystemClock(), note_id, text, _scope(scope))
    _print_result(result)


@memory_app.command("audit")
def audit_cmd(scope: ScopeOpt = None, session: Annotated[str | None, typer.Option(help="a run id")] = None,
              limit: int = 200) -> None:
    """Every write, rejection (code only), consolidation op and injection."""
    rows = operator.audit_log(Database.open_default(), SystemClock(), session_id=session, limit=limit)
    wanted = _scope(scope)
    for row in rows:
        key = row["scope_key"] or ""
        if (wanted == "global" and key != "global") or (wanted == "project" and not key.startswith("p_")):
            continue
        if wanted == "session" and (row["session_id"] is None or key.startswith("p_") or key == "global"):
            continue
        ids = ",".join(json.loads(row["note_ids_json"]))
        typer.echo(f"{row['ts']}  {row['session_id'] or '-':<14} {row['event']:<12} {row['code']:<26} {ids}")


WorkspaceOpt = Annotated[Path, typer.Option("--workspace", help="the repository (default: here)")]


@memory_app.command("proposals")
def proposals_cmd(workspace: WorkspaceOpt = Path(".")) -> None:
    """Profile values confirmed in two or more sessions, waiting for approval."""
    db, clock = Database.open_default(), SystemClock()
    project_id, _ = project_identity(MemoryRepo(db, clock), workspace)
    found = profile_proposals(db, clock, project_id)
    for proposal in found:
        typer.echo(f"{proposal.field} = {proposal.value}    (sessions: {', '.join(proposal.sessions)})")
    if not found:
        typer.echo("(no proposals)")


@memory_app.command("approve")
def approve_cmd(field: str, value: str, workspace: WorkspaceOpt = Path(".")) -> None:
    """Apply a profile proposal (see `onloop memory proposals`)."""
    db, clock = Database.open_default(), SystemClock()
    project_id, _ = project_identity(MemoryRepo(db, clock), workspace)
    proposal = approve(db, clock, project_id, field, value)
    typer.echo(f"profile {proposal.field} = {proposal.value}")


def _print_result(result: WriteResult) -> None:
    typer.echo(json.dumps(result.as_tool_output()))
    if not result.ok:
        raise typer.Exit(1)


def note_cmd(
    text: str,
    scope: Annotated[str, typer.Option(help="session, project or global")] = "project",
    kind: Annotated[str | None, typer.Option(help="preference, constraint, command, convention, pitfall, fact")] = None,
    keywords: Annotated[str | None, typer.Option(help="1-3 comma-separated topic tags")] = None,
    evidence: Annotated[str | None, typer.Option(help="user_stated, tool_verified, observed_repeatedly")] = None,
) -> None:
    """Save a memory note for this run (for agents; reads ONLOOP_RUN_ID and ONLOOP_ITERATION)."""
    run_id = os.environ.get("ONLOOP_RUN_ID")
    if not run_id:
        raise UsageError("onloop note runs inside an onloop iteration: ONLOOP_RUN_ID is not set")
    iteration = os.environ.get("ONLOOP_ITERATION")
    record: dict[str, object] = {"text": text, "scope": scope}
    if kind:
        record["kind"] = kind
    if keywords:
        record["keywords"] = [k for k in keywords.split(",") if k.strip()]
    if evidence:
        record["evidence"] = evidence
    notes_file = os.environ.get("ONLOOP_NOTES_FILE")
    if notes_file:
        _print_result(_append_note(Path(notes_file), record))
        return
    turn = int(iteration) if iteration and iteration.isdigit() else None
    _print_result(save_memory_note(Database.open_default(), run_id, record, turn=turn, clock=SystemClock(),
                                   require_all=False))


def _append_note(path: Path, record: dict[str, object]) -> WriteResult:
    """Pre-check steps 1-8 so the agent hears a code now; only a passing note reaches the file."""
    verdict = validate_note(record, require_all=False)
    if verdict.draft is None:
        return WriteResult(False, verdict.code)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    return WriteResult(True, verdict.code)


def register(app: typer.Typer) -> None:
    """Add `onloop memory ...` and `onloop note` to the main app."""
    app.add_typer(memory_app, name="memory")
    app.command("note")(note_cmd)
