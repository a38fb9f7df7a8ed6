"""Memory's counters, computed from the audit log (so they cannot disagree with it).

- `write_rate`: accepted writes per turn that wrote anything (a noisy-capture signal);
- `blocked_write_rate`: rejected attempts / all attempts;
- `dedup_rate`: duplicate attempts / all attempts;
- `ops_by_type`: consolidation ops applied, by type (KEEP, ADD, MERGE, SUPERSEDE, DROP, ...);
- `fallback_rate`: consolidations where a configured model failed or cheated (so the deterministic
  fallback ran) / consolidations that had a model. Runs without a model use the deterministic plan by
  design and do not count.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from onloop.clock import Clock
from onloop.memory.repo import MemoryRepo
from onloop.store.db import Database


@dataclass(frozen=True, slots=True)
class MemoryMetrics:
    attempts: int
    accepted: int
    blocked: int
    duplicates: int
    turns: int
    consolidations: int
    model_consolidations: int
    fallbacks: int
    blocked_by_code: dict[str, int] = field(default_factory=dict)
    ops_by_type: dict[str, int] = field(default_factory=dict)

    @property
    def write_rate(self) -> float:
        return self.accepted / self.turns if self.turns else 0.0

    @property
    def blocked_write_rate(self) -> float:
        return self.blocked / self.attempts if self.attempts else 0.0

    @property
    def dedup_rate(self) -> float:
        return self.duplicates / self.attempts if self.attempts else 0.0

    @property
    def fallback_rate(self) -> float:
        return self.fallbacks / self.model_consolidations if self.model_consolidations else 0.0


def memory_metrics(db: Database, clock: Clock, session_id: str | None = None) -> MemoryMetrics:
    repo = MemoryRepo(db, clock)
    rows = repo.audit_rows("session_id = ?", (session_id,)) if session_id else repo.audit_rows()
    events: Counter[str] = Counter(row["event"] for row in rows)
    blocked = Counter(row["code"] for row in rows if row["event"] == "reject")
    ops = Counter(row["code"] for row in rows if row["event"] == "op")
    turns = {
        (row["session_id"], json.loads(row["detail_json"]).get("turn"))
        for row in rows
        if row["event"] == "write" and row["detail_json"]
    }
    consolidations = [row for row in rows if row["event"] == "consolidate" and row["code"] != "FAILED"]
    return MemoryMetrics(
        attempts=events["write"] + events["reject"] + events["duplicate"],
        accepted=events["write"],
        blocked=events["reject"],
        duplicates=events["duplicate"],
        turns=len(turns),
        consolidations=len(consolidations),
        model_consolidations=sum(1 for row in consolidations if row["code"] in ("MODEL", "FALLBACK")),
        fallbacks=sum(1 for row in consolidations if row["code"] == "FALLBACK"),
        blocked_by_code=dict(blocked),
        ops_by_type=dict(ops),
    )
