"""Memory: notes that outlive an iteration, in four phases, with every rule enforced in code.

1. Injection (`render`): at the top of every iteration, the project profile (detected from the
   repository, never written by a model), at most 6 project/global notes, the fixed memory policy, and
   after trimming exactly the session notes of the trimmed turns.
2. Distillation (`distill`, `validate`): notes enter only through `save_memory_note` (the built-in
   agent's tool, the notes file, `onloop note`), through a deterministic ten-step pipeline that refuses
   secrets, personal data, instructions aimed at the agent's authority, speculation and noise, and
   keeps "this time" notes in the session.
3. Consolidation (`consolidation`, `ops`, `fallback`): at the end of a run or on idle TTL a model
   proposes operations over aliases; code checks them (every input accounted for once, no invented
   content, no over-pruning, safety again) and falls back to a deterministic merge.
4. Trimming (`trim`): the last N user turns, whole, with tool-call pairs intact.

The operator sees and controls all of it (`operator`, `onloop memory ...`); nothing is destroyed, and
the audit log holds codes and note ids, never note text. State lives in the SQLite store (`schema`).

Entry points for the loop: `render_injection`, `ingest_notes_file`, `save_memory_note`,
`handle_tool_call` with `MEMORY_TOOL`, `consolidate`, `consolidate_idle`, `trim_messages`,
`record_trim`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onloop.memory.consolidation import ConsolidationReport, consolidate, consolidate_idle
    from onloop.memory.distill import (
        MEMORY_TOOL,
        NOTES_FILE,
        IngestReport,
        handle_tool_call,
        ingest_notes_file,
        save_memory_note,
    )
    from onloop.memory.metrics import MemoryMetrics, memory_metrics
    from onloop.memory.model import MemoryNote, SaveResult, WriteResult
    from onloop.memory.render import MEMORY_POLICY, POLICY_VERSION, render_context, render_injection
    from onloop.memory.trim import TrimmingSession, TrimResult, record_trim, trim_messages

# Exports load on first use: `onloop.store.schema` imports `onloop.memory.schema` to register the
# tables, and that must not drag pydantic, yaml and the model protocol into every `onloop` start.
_EXPORTS = {
    "ConsolidationReport": "consolidation", "consolidate": "consolidation", "consolidate_idle": "consolidation",
    "MEMORY_TOOL": "distill", "NOTES_FILE": "distill", "IngestReport": "distill",
    "handle_tool_call": "distill", "ingest_notes_file": "distill", "save_memory_note": "distill",
    "MemoryMetrics": "metrics", "memory_metrics": "metrics",
    "MemoryNote": "model", "SaveResult": "model", "WriteResult": "model",
    "MEMORY_POLICY": "render", "POLICY_VERSION": "render", "render_context": "render",
    "render_injection": "render",
    "TrimmingSession": "trim", "TrimResult": "trim", "record_trim": "trim", "trim_messages": "trim",
}
__all__ = [
    "MEMORY_POLICY",
    "MEMORY_TOOL",
    "NOTES_FILE",
    "POLICY_VERSION",
    "ConsolidationReport",
    "IngestReport",
    "MemoryMetrics",
    "MemoryNote",
    "SaveResult",
    "TrimResult",
    "TrimmingSession",
    "WriteResult",
    "consolidate",
    "consolidate_idle",
    "handle_tool_call",
    "ingest_notes_file",
    "memory_metrics",
    "record_trim",
    "render_context",
    "render_injection",
    "save_memory_note",
    "trim_messages",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'onloop.memory' has no attribute {name!r}")
    return getattr(importlib.import_module(f"onloop.memory.{module}"), name)
