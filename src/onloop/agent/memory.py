"""Where `save_memory_note` puts a note: for now a JSON line in the iteration's scratch directory.

The memory subsystem (`onloop.memory`) ingests `<scratch_dir>/memory_notes.jsonl` after the iteration
(distillation). The sink is a plain callable so that it can be swapped for a direct write into the
store without touching the agent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from onloop.clock import Clock, SystemClock, utc_iso

NOTES_FILE = "memory_notes.jsonl"


@dataclass(frozen=True, slots=True)
class MemoryNote:
    note: str
    scope: str  # session | project | global
    tags: tuple[str, ...] = ()
    run_id: str = ""
    iteration: int = 0


MemorySink = Callable[[MemoryNote], None]


def jsonl_sink(scratch_dir: Path, clock: Clock | None = None) -> MemorySink:
    """A sink appending each note as one JSON line to `<scratch_dir>/memory_notes.jsonl`."""
    the_clock = clock or SystemClock()

    def save(note: MemoryNote) -> None:
        record = {"ts": utc_iso(the_clock.now()), "scope": note.scope, "note": note.note,
                  "tags": list(note.tags), "run_id": note.run_id, "iteration": note.iteration}
        scratch_dir.mkdir(parents=True, exist_ok=True)
        with (scratch_dir / NOTES_FILE).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    return save


def read_notes(scratch_dir: Path) -> Sequence[dict[str, object]]:
    path = scratch_dir / NOTES_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
