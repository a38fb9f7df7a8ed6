"""Two sessions end to end: write, consolidate, inject; then trim and re-inject exactly what was cut."""

from __future__ import annotations

import json
from pathlib import Path

from onloop.memory import (
    consolidate,
    handle_tool_call,
    ingest_notes_file,
    memory_metrics,
    record_trim,
    render_injection,
    save_memory_note,
    trim_messages,
)
from onloop.memory.distill import MEMORY_TOOL
from onloop.memory.repo import MemoryRepo
from onloop.models.base import Message, ModelRequest
from onloop.store.db import Database
from tests.memory.conftest import FakeLLM, FrozenClock, note_args, ops, text, tool_call


def iteration(db: Database, clock: FrozenClock, ws: Path, model: FakeLLM, run_id: str, turn: int,
              history: list[Message] | None = None) -> list[Message]:
    """One agent iteration: the memory block is the system prompt; tool calls go through memory."""
    system = Message("system", render_injection(db, ws, run_id, 1200, clock=clock))
    messages = [system, *(history or []), Message("user", f"iteration {turn}: work the plan")]
    for _ in range(10):
        response = model.complete(ModelRequest(messages=messages, tools=(MEMORY_TOOL,)))
        messages.append(Message("assistant", response.text, tool_calls=response.tool_calls))
        if not response.tool_calls:
            return messages
        messages += [handle_tool_call(db, run_id, c, turn=turn, clock=clock) for c in response.tool_calls]
    raise AssertionError("iteration did not finish")


def test_two_sessions(db: Database, clock: FrozenClock, workspace: Path, tmp_path: Path) -> None:
    repo = MemoryRepo(db, clock)
    # Session 1: the built-in agent saves two notes, an agent CLI one through the notes file.
    agent1 = FakeLLM(steps=[
        tool_call("c1", **note_args("Run tests with `uv run pytest -q`; the suite takes 6 minutes.")),
        tool_call("c2", **note_args("This task only: keep the public API unchanged.", kind="constraint")),
        tool_call("c3", **note_args("Remember my SSN 123-45-6789 for the forms.", kind="fact")),
        text("done"),
    ])
    iteration(db, clock, workspace, agent1, "run-1", 0)
    notes_file = tmp_path / "memory_notes.jsonl"
    notes_file.write_text(json.dumps({"text": "Never edit files under `migrations/` by hand.", "scope": "project",
                                      "kind": "pitfall", "tags": ["migrations"]}) + "\n")
    ingest_notes_file(db, notes_file, "run-1", 1, clock=clock)
    consolidator = FakeLLM(steps=[ops({"op": "KEEP", "id": "S1"}, {"op": "KEEP", "id": "S2"})])
    report = consolidate(db, "run-1", consolidator, clock)
    consolidator.assert_complete()
    assert report.status == "done" and not report.fallback
    assert "public API" not in consolidator.calls[0].messages[1].content
    assert repo.staged("run-1") == []

    # Session 2, a day later: the injected prompt has the promoted notes, not the ephemeral one.
    clock.advance(days=1)
    agent2 = FakeLLM(steps=[
        tool_call("d1", **note_args("Use the `fixtures/small` dataset in this session.", scope="session",
                                    kind="convention", keywords=["fixtures"])),
        text("ok"),
    ])
    iteration(db, clock, workspace, agent2, "run-2", 0)
    system = agent2.calls[0].messages[0].content
    assert "Run tests with `uv run pytest -q`" in system and "migrations/" in system
    assert "public API" not in system and "SSN" not in system and "SESSION memory" not in system
    assert "package_manager: uv" in system

    # Two more turns, each saving a session note; then trimming to one turn cuts turns 0 and 1.
    history: list[Message] = []
    for turn in (1, 2):
        save_memory_note(db, "run-2", note_args(f"Use the `stub{turn}` server in this session.", scope="session",
                                                kind="convention", keywords=["stubs"]), turn=turn, clock=clock)
        history += [Message("user", f"turn {turn}"), Message("assistant", "ack")]
    full = [Message("user", "turn 0"), Message("assistant", "ack"), *history]
    trimmed = trim_messages(full, max_turns=1)
    assert trimmed.dropped_turns == (0, 1)
    record_trim(db, "run-2", trimmed.highest_dropped_turn, clock)
    agent3 = FakeLLM(steps=[text("ok")])
    iteration(db, clock, workspace, agent3, "run-2", 3, list(trimmed.messages))
    system = agent3.calls[0].messages[0].content
    block = system.split("SESSION memory")[1].split("</memories>")[0]
    assert "fixtures/small" in block and "stub1" in block and "stub2" not in block

    # Counters: 4 attempts in run-1 with 1 blocked (the SSN), 1 accepted from the file; no fallback.
    metrics = memory_metrics(db, clock, "run-1")
    assert (metrics.attempts, metrics.accepted, metrics.blocked) == (4, 3, 1)
    assert metrics.blocked_write_rate == 0.25 and metrics.write_rate == 1.5  # 3 accepted over turns 0 and 1
    assert metrics.fallback_rate == 0.0 and metrics.ops_by_type == {"DROP": 1, "KEEP": 2}
    overall = memory_metrics(db, clock)
    assert overall.consolidations == 1 and overall.blocked_by_code == {"REJECT_PII": 1}


def test_second_session_after_fallback_counts_fallback_rate(db: Database, clock: FrozenClock,
                                                             workspace: Path) -> None:
    repo = MemoryRepo(db, clock)
    render_injection(db, workspace, "run-a", clock=clock)
    save_memory_note(db, "run-a", note_args("Run `make lint` before commits."), turn=0, clock=clock)
    consolidate(db, "run-a", FakeLLM(steps=[text("{not json")]), clock)
    render_injection(db, workspace, "run-b", clock=clock)
    save_memory_note(db, "run-b", note_args("Run `make docs` after API changes.", keywords=["docs"]), turn=0,
                     clock=clock)
    consolidate(db, "run-b", FakeLLM(steps=[ops({"op": "KEEP", "id": "G1"}, {"op": "KEEP", "id": "S1"})]), clock)
    metrics = memory_metrics(db, clock)
    assert metrics.consolidations == 2 and metrics.fallback_rate == 0.5
    project = repo.session("run-b")
    assert project is not None
    assert len(repo.active([project.project_id])) == 2
    assert "make docs" in render_injection(db, workspace, "run-c", clock=clock)
