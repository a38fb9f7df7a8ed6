"""After a crash: the interrupted iteration is kept as interrupted, with what it cost.

An iteration whose row still says `running` when the run is resumed (or when onloop is stopped by a
signal) was cut off. Its partial transcript is on disk (agents stream to it), so its usage is read
back through the backend's own parser and added to the run's spend: a `kill -9` loses no spend
counter. Its partial work is committed under `refs/onloop/<run>/rejected/<n>` and the worktree goes
back to the last checkpoint, so the next iteration starts from a verified state.
"""

from __future__ import annotations

import json
from pathlib import Path

from onloop.backends import AgentBackend
from onloop.clock import Clock, utc_iso
from onloop.loop.events import EventLog
from onloop.loop.setup import frozen_config
from onloop.loop.state import RunState
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.store.runs import RunRow
from onloop.workspace import rollback


def recover_interrupted(db: Database, row: RunRow, backend: AgentBackend, state: RunState, events: EventLog,
                        clock: Clock, *, rollback_worktree: bool) -> list[int]:
    recovered = []
    for it in store.running_iterations(db, row.id):
        n = int(it["n"])
        transcript = Path(it["transcript_path"]) if it["transcript_path"] else None
        partial = backend.parse_log(transcript) if transcript else None
        usage_in = partial.usage.input_tokens if partial else 0
        usage_out = partial.usage.output_tokens if partial else 0
        cost = partial.cost.as_decimal() if partial else 0
        state.tokens_in += usage_in
        state.tokens_out += usage_out
        state.spend_usd += cost
        state.iterations_done = max(state.iterations_done, n)
        kept = None
        if rollback_worktree and state.last_checkpoint:
            kept = rollback(Path(row.worktree), row.id, n, state.last_checkpoint,
                            f"onloop: iteration {n} interrupted (partial work kept)",
                            keep=frozen_config(row).policy.caches)
        receipt = {
            "status": "interrupted", "ended_at": utc_iso(clock.now()), "tokens_in": usage_in,
            "tokens_out": usage_out, "cost_usd": str(cost),
            "cost_source": partial.cost.source.value if partial else "unknown",
            "decision": "stop", "reason": "interrupted: onloop stopped during this iteration",
            "receipt_json": json.dumps({"iteration": n, "status": "interrupted", "partial_events": partial.events
                                        if partial else 0, "rejected_ref": kept, "transcript": str(transcript)}),
        }
        store.finish_iteration(db, row.id, n, receipt, state.counters())
        events.emit("iteration_interrupted", f"iteration {n} was interrupted; partial transcript kept",
                    iteration_n=n, tokens_in=usage_in, tokens_out=usage_out, transcript=str(transcript))
        recovered.append(n)
    return recovered
