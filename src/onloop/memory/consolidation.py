"""Phase 3, consolidation: a session's staged notes merged into project and global memory.

Runs at the end of a run, on idle TTL (`consolidate_idle`) or at shutdown, off the agent's critical
path. The model proposes ops (`onloop.memory.ops`); code validates them and falls back to the
deterministic plan (`onloop.memory.fallback`) whenever the model is absent, fails, returns bad JSON
or cheats. Guarantees:
- idempotent: a `done` session returns at once, without a model call; a fresh lease held by another
  worker is respected, a stale one is taken over;
- session-scope notes never leave the session (the pre-pass drops them before any model sees them);
- optimistic concurrency: each target scope's version is read before the model call and checked in
  the committing transaction; on a conflict the scope is re-planned (at most twice more);
- a failure that is not the model's (the store, three version conflicts) leaves the unapplied notes
  staged, marks the session `failed`, and schedules a retry with exponential backoff (3 attempts).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from onloop.clock import Clock, utc_iso
from onloop.errors import StoreError
from onloop.memory.fallback import fallback_plan
from onloop.memory.model import GLOBAL_KEY, MemoryNote, Scope, date_of, norm_hash
from onloop.memory.ops import OPS_SCHEMA, OpsContext, OpsRejected, OverPruning, alias_map, parse_ops, plan_from_ops
from onloop.memory.plan import Plan, apply_plan
from onloop.memory.prompt import consolidation_messages
from onloop.memory.repo import MemoryRepo
from onloop.models.base import ChatModel, ModelError, ModelRequest
from onloop.store.db import Database

MODEL_ATTEMPTS = 3
MODEL_BACKOFF_SECONDS = 2.0
VERSION_RETRIES = 2
LEASE_SECONDS = 600
RETRY_BASE_SECONDS = 60
MAX_ATTEMPTS = 3
IDLE_TTL_SECONDS = 1800


@dataclass(frozen=True, slots=True)
class ConsolidationReport:
    session_id: str
    status: Literal["done", "failed", "skipped"]
    model_calls: int = 0
    fallback_reasons: tuple[str, ...] = ()  # one per scope that fell back: NO_MODEL, MODEL_ERROR, BAD_JSON, ...
    review_flag: bool = False
    ops: dict[str, int] = field(default_factory=dict)
    inserted: tuple[str, ...] = ()
    error: str | None = None

    @property
    def fallback(self) -> bool:
        return bool(self.fallback_reasons)


@dataclass
class _Tally:
    calls: int = 0
    reasons: list[str] = field(default_factory=list)
    review: bool = False
    ops: Counter[str] = field(default_factory=Counter)
    inserted: list[str] = field(default_factory=list)


def consolidate(db: Database, run_id: str, model: ChatModel | None, clock: Clock) -> ConsolidationReport:
    """Consolidate the session `run_id`. Never raises for a model problem (that is the fallback's job)."""
    repo = MemoryRepo(db, clock)
    if not _take_lease(repo, run_id):
        return ConsolidationReport(run_id, "skipped")
    session = repo.session(run_id)
    assert session is not None  # the lease exists only for a registered session
    tally = _Tally()
    try:
        targets = _prepass(repo, run_id, session.project_id)
        order: tuple[tuple[Scope, str], ...] = (("project", session.project_id), ("global", GLOBAL_KEY))
        for scope, key in order:
            if targets.get(key):
                _consolidate_scope(repo, run_id, scope, key, model, tally)
    except StoreError as exc:
        return _fail(repo, run_id, session.attempts, str(exc), tally)
    # A note staged while we worked (a resumed run, say) keeps the session pending, never stranded.
    late = bool(repo.staged(run_id))
    fields: dict[str, object] = {"consolidation": "pending" if late else "done", "lease_at": None, "error": None}
    if tally.review:
        fields["review_flag"] = 1
    repo.update_session(run_id, **fields)
    # Without a model the deterministic plan is the design, not a fallback: fallback_rate must measure
    # how often a configured model failed or cheated.
    code = "MODEL" if not tally.reasons else "DETERMINISTIC" if set(tally.reasons) == {"NO_MODEL"} else "FALLBACK"
    repo.audit("consolidate", code, session_id=run_id, note_ids=tally.inserted,
               detail={"reasons": tally.reasons, "model_calls": tally.calls, "review": tally.review})
    return _report(run_id, "done", tally)


def _report(run_id: str, status: Literal["done", "failed", "skipped"], tally: _Tally,
            error: str | None = None) -> ConsolidationReport:
    return ConsolidationReport(run_id, status, tally.calls, tuple(tally.reasons), tally.review,
                               dict(tally.ops), tuple(tally.inserted), error)


def _take_lease(repo: MemoryRepo, run_id: str) -> bool:
    now = repo.clock.now()
    with repo.tx():
        row = repo.session_row(run_id)
        if row is None or row["consolidation"] == "done":
            return False
        fresh = utc_iso(now - timedelta(seconds=LEASE_SECONDS))
        if row["consolidation"] == "running" and row["lease_at"] is not None and row["lease_at"] > fresh:
            return False  # another worker holds a fresh lease; a stale one is taken over
        repo.update_session(run_id, consolidation="running", lease_at=utc_iso(now))
    return True


def _fail(repo: MemoryRepo, run_id: str, attempts: int, error: str, tally: _Tally) -> ConsolidationReport:
    attempts += 1
    retry_at = repo.clock.now() + timedelta(seconds=RETRY_BASE_SECONDS * 2 ** (attempts - 1))
    repo.update_session(run_id, consolidation="failed", lease_at=None, attempts=attempts, error=error[:500],
                        next_attempt_at=utc_iso(retry_at) if attempts < MAX_ATTEMPTS else None)
    repo.audit("consolidate", "FAILED", session_id=run_id, detail={"attempts": attempts})
    return _report(run_id, "failed", tally, error)


def _prepass(repo: MemoryRepo, run_id: str, project_id: str) -> dict[str, list[MemoryNote]]:
    """Drop session-scope notes, dedup exact copies against their target, group the rest by target."""
    today = date_of(repo.clock.now())
    targets: dict[str, list[MemoryNote]] = {}
    with repo.tx():
        for note in repo.staged(run_id):
            if note.scope == "session":
                repo.set_status([note.seq], "dropped", "ephemeral", None)
                repo.audit("op", "DROP", session_id=run_id, note_ids=[note.id], detail={"reason": "ephemeral"})
                continue
            key = project_id if note.scope == "project" else GLOBAL_KEY
            twin = next((n for n in repo.active([key]) if norm_hash(n.text) == norm_hash(note.text)), None)
            if twin is not None:
                repo.update_fields(twin.seq, last_update_date=max(today, twin.last_update_date))
                repo.set_status([note.seq], "consumed", f"duplicate_of:{twin.id}", None)
                repo.audit("op", "DEDUP", session_id=run_id, scope_key=key, note_ids=[note.id, twin.id])
                continue
            targets.setdefault(key, []).append(note)
    return targets


def _consolidate_scope(repo: MemoryRepo, run_id: str, scope: Scope, key: str, model: ChatModel | None,
                       tally: _Tally) -> None:
    for _ in range(1 + VERSION_RETRIES):
        version = repo.version(key)
        existing = repo.active([key])
        staged = [n for n in repo.staged(run_id) if n.scope == scope]
        plan = _plan(repo, scope, key, existing, staged, model, tally)
        with repo.tx():
            if repo.version(key) != version:
                continue  # another writer committed while we planned: plan again on fresh state
            inserted = apply_plan(repo, plan, date_of(repo.clock.now()), run_id)
            repo.bump_version(key)
        tally.ops.update(a.op for a in plan.audit)
        tally.inserted += [n.id for n in inserted]
        return
    raise StoreError(f"memory scope {key} kept changing during consolidation", run_id=run_id)


def _plan(repo: MemoryRepo, scope: Scope, key: str, existing: Sequence[MemoryNote], staged: Sequence[MemoryNote],
          model: ChatModel | None, tally: _Tally) -> Plan:
    if model is None:
        tally.reasons.append("NO_MODEL")
        return fallback_plan(scope, key, existing, staged)
    ctx = OpsContext(scope, key, alias_map(existing, staged), date_of(repo.clock.now()))
    try:
        text = _ask(repo.clock, model, ctx, tally)
        plan = plan_from_ops(parse_ops(text), ctx)
        _check_accounted(plan, staged)
        return plan
    except OpsRejected as exc:
        tally.reasons.append(exc.reason)
        tally.review = tally.review or isinstance(exc, OverPruning)
    except (ModelError, TimeoutError, OSError) as exc:
        tally.reasons.append("TIMEOUT" if isinstance(exc, TimeoutError) else "MODEL_ERROR")
    return fallback_plan(scope, key, existing, staged)


def _check_accounted(plan: Plan, staged: Sequence[MemoryNote]) -> None:
    """Belt and braces: whatever the ops said, every staged note ends up consumed or dropped."""
    if plan.accounted() != {n.seq for n in staged}:
        raise OpsRejected("MISSING_DISPOSITION")


def _ask(clock: Clock, model: ChatModel, ctx: OpsContext, tally: _Tally) -> str:
    """One answer from the model, retrying transient failures with exponential backoff."""
    request = ModelRequest(messages=consolidation_messages(ctx), response_schema=OPS_SCHEMA, temperature=0.0)
    for attempt in range(MODEL_ATTEMPTS):
        tally.calls += 1
        try:
            return model.complete(request).text
        except (ModelError, TimeoutError, OSError):
            if attempt == MODEL_ATTEMPTS - 1:
                raise
            clock.sleep(MODEL_BACKOFF_SECONDS * 2**attempt)
    raise AssertionError("unreachable")


def consolidate_idle(db: Database, model: ChatModel | None, clock: Clock,
                     idle_ttl: float = IDLE_TTL_SECONDS) -> list[ConsolidationReport]:
    """Consolidate every session idle for `idle_ttl` seconds, stale leases and due retries included."""
    now = clock.now()
    idle_before = utc_iso(now - timedelta(seconds=idle_ttl))
    lease_before = utc_iso(now - timedelta(seconds=LEASE_SECONDS))
    rows = MemoryRepo(db, clock).sessions_where(
        "(consolidation = 'pending' AND heartbeat_at <= ?) OR (consolidation = 'running' AND lease_at <= ?) "
        "OR (consolidation = 'failed' AND next_attempt_at IS NOT NULL AND next_attempt_at <= ?) "
        "ORDER BY session_id",
        (idle_before, lease_before, utc_iso(now)),
    )
    return [consolidate(db, row["session_id"], model, clock) for row in rows]
