"""Consolidation with scripted ops: the happy path, every fallback path, leases, retries, versions."""

from __future__ import annotations

import json
from typing import Any

from onloop.memory.consolidation import consolidate, consolidate_idle
from onloop.memory.distill import save_memory_note
from onloop.memory.fallback import fallback_plan
from onloop.memory.model import MemoryNote, note_id
from onloop.memory.plan import MAX_ACTIVE_PER_SCOPE
from onloop.memory.repo import MemoryRepo
from onloop.models.base import ModelError, ModelRequest, ModelResponse
from onloop.store.db import Database
from tests.memory.conftest import FakeLLM, FrozenClock, note_args, ops, session, text

P = "p_test"


def existing(repo: MemoryRepo, text_: str, date: str = "2025-12-01", kind: str = "command",
             keywords: tuple[str, ...] = ("install",), pinned: bool = False, key: str = P) -> MemoryNote:
    scope = "global" if key == "global" else "project"
    note = MemoryNote(id=note_id(text_, scope, key), text=text_, keywords=keywords, scope=scope,  # type: ignore[arg-type]
                      scope_key=key, kind=kind, evidence="tool_verified", created=date,  # type: ignore[arg-type]
                      last_update_date=date, source_session="run-0", source_turn=0, pinned=pinned)
    return repo.insert(note, "active")


def stage(db: Database, clock: FrozenClock, sid: str, text_: str, turn: int = 0, **kw: Any) -> str:
    result = save_memory_note(db, sid, note_args(text_, **kw), turn=turn, clock=clock)
    assert result.ok, result
    assert result.note_id is not None
    return result.note_id


def active_texts(repo: MemoryRepo, key: str = P) -> list[str]:
    return sorted(n.text for n in repo.active([key]))


def test_happy_path_pnpm_promoted_task_only_dropped(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    old = existing(repo, "Use `npm install` to install packages.")
    sid = session(repo)
    stage(db, clock, sid, "Use `pnpm install` to install packages, not npm.", keywords=["install"])
    stage(db, clock, sid, "This task only: don't touch the public API.", kind="constraint", keywords=["api"])
    model = FakeLLM(steps=[ops({"op": "SUPERSEDE", "old": "G1", "by": "S1", "reason": "newer conflicting"})])
    report = consolidate(db, sid, model, clock)
    model.assert_complete()
    assert report.status == "done" and not report.fallback and report.model_calls == 1
    assert active_texts(repo) == ["Use `pnpm install` to install packages, not npm."]
    archived = repo.find(old.id)[0]
    assert archived.status == "archived" and archived.archive_reason.startswith("superseded_by:")
    assert repo.staged(sid) == []
    prompt = model.calls[0].messages[1].content
    assert "public API" not in prompt and '"id": "S1"' in prompt and old.id not in prompt
    assert model.calls[0].temperature == 0.0 and model.calls[0].response_schema is not None
    session_state = repo.session(sid)
    assert session_state is not None and session_state.consolidation == "done"
    promoted = repo.active([P])[0]
    assert promoted.sources and promoted.last_update_date == "2026-01-07"


def test_merge_keeps_provenance_and_max_date(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    g1 = existing(repo, "Use pnpm to install packages.", keywords=("pnpm",))
    sid = session(repo)
    s1 = stage(db, clock, sid, "Always use pnpm, never npm.", keywords=["pnpm"], kind="convention")
    model = FakeLLM(steps=[ops({"op": "MERGE", "from": ["G1", "S1"],
                                "text": "Always use pnpm to install packages, never npm.", "keywords": ["pnpm"]})])
    report = consolidate(db, sid, model, clock)
    assert not report.fallback and report.ops == {"MERGE": 1}
    [merged] = repo.active([P])
    assert merged.text == "Always use pnpm to install packages, never npm."
    assert set(merged.sources) == {g1.id, s1} and merged.last_update_date == "2026-01-07"
    assert merged.created == "2025-12-01"
    assert repo.find(g1.id)[0].archive_reason == f"merged_into:{merged.id}"


def _fallback_case(db: Database, repo: MemoryRepo, clock: FrozenClock, *steps: Any) -> tuple[Any, FakeLLM]:
    existing(repo, "Use `npm install` to install packages.")
    sid = session(repo)
    stage(db, clock, sid, "Use `pnpm install` to install packages.", keywords=["install"])
    model = FakeLLM(steps=list(steps))
    return consolidate(db, sid, model, clock), model


def test_invented_token_falls_back(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    report, _ = _fallback_case(db, repo, clock, ops(
        {"op": "KEEP", "id": "G1"},
        {"op": "ADD", "from": ["S1"], "text": "Use `pnpm install --frozen-lockfile` with corepack.",
         "keywords": ["install"]}))
    assert report.fallback_reasons == ("INVENTED_CONTENT",)
    # The fallback oracle: same (kind, primary keyword), the newer session note replaces the old one.
    assert active_texts(repo) == ["Use `pnpm install` to install packages."]


def test_missing_disposition_falls_back(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    report, _ = _fallback_case(db, repo, clock, ops({"op": "KEEP", "id": "G1"}))
    assert report.fallback_reasons == ("MISSING_DISPOSITION",)


def test_unknown_and_double_dispositions_fall_back(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    report, _ = _fallback_case(db, repo, clock, ops({"op": "KEEP", "id": "G1"}, {"op": "KEEP", "id": "S1"},
                                                    {"op": "DROP", "id": "S9", "reason": "ephemeral"}))
    assert report.fallback_reasons == ("UNKNOWN_ID",)


def test_double_disposition_falls_back(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    report, _ = _fallback_case(db, repo, clock, ops({"op": "KEEP", "id": "G1"}, {"op": "KEEP", "id": "S1"},
                                                    {"op": "DROP", "id": "S1", "reason": "ephemeral"}))
    assert report.fallback_reasons == ("DOUBLE_DISPOSITION",)


def test_bad_json_falls_back(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    report, _ = _fallback_case(db, repo, clock, text("Sure! Here are the ops: KEEP everything."))
    assert report.fallback_reasons == ("BAD_JSON",) and report.model_calls == 1


def test_timeouts_retry_with_backoff_then_fall_back(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    report, model = _fallback_case(db, repo, clock, TimeoutError("slow"), TimeoutError("slow"), TimeoutError("slow"))
    model.assert_complete()
    assert report.model_calls == 3 and clock.sleeps == [2.0, 4.0]
    assert report.fallback_reasons == ("TIMEOUT",) and report.status == "done"
    assert active_texts(repo) == ["Use `pnpm install` to install packages."]


def test_transient_model_error_then_success(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    report, model = _fallback_case(db, repo, clock, ModelError("429", rate_limited=True),
                                   ops({"op": "KEEP", "id": "G1"}, {"op": "KEEP", "id": "S1"}))
    model.assert_complete()
    assert report.model_calls == 2 and not report.fallback and clock.sleeps == [2.0]
    assert len(active_texts(repo)) == 2


def test_tie_session_must_win(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    existing(repo, "Use `npm install` to install packages.", date="2026-01-07")
    sid = session(repo)
    stage(db, clock, sid, "Use `pnpm install` to install packages.", keywords=["install"])
    model = FakeLLM(steps=[ops({"op": "SUPERSEDE", "old": "S1", "by": "G1", "reason": "newer"})])
    report = consolidate(db, sid, model, clock)
    assert report.fallback_reasons == ("TIE_SESSION_MUST_WIN",)
    assert active_texts(repo) == ["Use `pnpm install` to install packages."]  # the fallback: session wins a tie


def test_supersede_by_older_is_rejected(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    existing(repo, "Use `npm install` to install packages.", date="2026-01-08")
    sid = session(repo)
    stage(db, clock, sid, "Use `pnpm install` to install packages.", keywords=["install"])
    model = FakeLLM(steps=[ops({"op": "SUPERSEDE", "old": "G1", "by": "S1", "reason": "newer"})])
    report = consolidate(db, sid, model, clock)
    assert report.fallback_reasons == ("SUPERSEDED_BY_OLDER",)
    assert active_texts(repo) == ["Use `npm install` to install packages."]  # the fallback: newer existing wins


def test_over_pruning_falls_back_and_flags_review(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    for i in range(5):
        existing(repo, f"Run `tool{i}` before commits.", keywords=(f"tool{i}",))
    sid = session(repo)
    stage(db, clock, sid, "Run `lint` before commits.", keywords=["lint"])
    model = FakeLLM(steps=[ops(*[{"op": "INVALIDATE", "id": f"G{i}", "reason": "stale"} for i in (1, 2, 3)],
                               {"op": "KEEP", "id": "G4"}, {"op": "KEEP", "id": "G5"}, {"op": "KEEP", "id": "S1"})])
    report = consolidate(db, sid, model, clock)
    assert report.fallback_reasons == ("OVER_PRUNE",) and report.review_flag
    assert len(repo.active([P])) == 6
    state = repo.session(sid)
    assert state is not None and state.review_flag


def test_two_invalidations_are_within_the_limit(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    for i in range(5):
        existing(repo, f"Run `tool{i}` before commits.", keywords=(f"tool{i}",))
    sid = session(repo)
    stage(db, clock, sid, "Run `lint` before commits.", keywords=["lint"])
    model = FakeLLM(steps=[ops(*[{"op": "INVALIDATE", "id": f"G{i}", "reason": "stale"} for i in (1, 2)],
                               *[{"op": "KEEP", "id": a} for a in ("G3", "G4", "G5", "S1")])])
    report = consolidate(db, sid, model, clock)
    assert not report.fallback and len(repo.active([P])) == 4


def test_idempotent_rerun_makes_no_second_call(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    report, model = _fallback_case(db, repo, clock, ops({"op": "KEEP", "id": "G1"}, {"op": "KEEP", "id": "S1"}))
    again = consolidate(db, "run-1", model, clock)
    assert report.status == "done" and again.status == "skipped" and len(model.calls) == 1


def test_concurrent_version_bump_replans(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    existing(repo, "Use `npm install` to install packages.")
    sid = session(repo)
    stage(db, clock, sid, "Run `make lint` before commits.", keywords=["lint"])

    def bump_then_answer(request: ModelRequest) -> ModelResponse:
        MemoryRepo(db, clock).bump_version(P)  # another writer commits while the model thinks
        return ops({"op": "KEEP", "id": "G1"}, {"op": "KEEP", "id": "S1"})

    model = FakeLLM(steps=[bump_then_answer, ops({"op": "KEEP", "id": "G1"}, {"op": "KEEP", "id": "S1"})])
    report = consolidate(db, sid, model, clock)
    model.assert_complete()
    assert report.status == "done" and report.model_calls == 2 and len(active_texts(repo)) == 2


def test_version_conflicts_exhausted_fail_and_keep_notes_then_retry(
    db: Database, repo: MemoryRepo, clock: FrozenClock
) -> None:
    sid = session(repo)
    stage(db, clock, sid, "Run `make lint` before commits.", keywords=["lint"])

    def always_bump(request: ModelRequest) -> ModelResponse:
        MemoryRepo(db, clock).bump_version(P)
        return ops({"op": "KEEP", "id": "S1"})

    model = FakeLLM(steps=[always_bump] * 3)
    report = consolidate(db, sid, model, clock)
    assert report.status == "failed" and report.error
    state = repo.session_row(sid)
    assert state is not None and state["consolidation"] == "failed" and state["attempts"] == 1
    assert len(repo.staged(sid)) == 1  # not applied, not cleared
    assert consolidate_idle(db, model, clock) == []  # the retry is not due yet
    clock.advance(seconds=61)
    model.steps.append(ops({"op": "KEEP", "id": "S1"}))
    [retry] = consolidate_idle(db, model, clock)
    assert retry.status == "done" and active_texts(repo) == ["Run `make lint` before commits."]


def test_pinned_notes_can_only_be_kept(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    pinned = existing(repo, "Use `npm install` to install packages.", pinned=True)
    sid = session(repo)
    stage(db, clock, sid, "Use `pnpm install` to install packages.", keywords=["install"])
    model = FakeLLM(steps=[ops({"op": "SUPERSEDE", "old": "G1", "by": "S1", "reason": "newer"})])
    report = consolidate(db, sid, model, clock)
    assert report.fallback_reasons == ("PINNED_NOT_KEPT",)
    # The fallback never prunes a pinned note either: both stay.
    assert repo.find(pinned.id)[0].status == "active" and len(active_texts(repo)) == 2


def test_unsafe_add_text_falls_back(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    secret = "ghp_" + "Q" * 36
    report, _ = _fallback_case(db, repo, clock, ops(
        {"op": "KEEP", "id": "G1"},
        {"op": "ADD", "from": ["S1"], "text": f"Use `pnpm install` with {secret}.", "keywords": ["install"]}))
    assert report.fallback_reasons == ("UNSAFE_TEXT:REJECT_SECRET",)
    rows = repo.audit_rows()
    assert all(secret not in json.dumps(dict(r)) for r in rows)


def test_fallback_alone_never_promotes_session_notes(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    sid = session(repo)
    stage(db, clock, sid, "This task only: keep the API unchanged.", kind="constraint", keywords=["api"])
    stage(db, clock, sid, "Use the mock server for now.", kind="convention", keywords=["mock"])
    stage(db, clock, sid, "Run `make lint` before commits.", scope="session", keywords=["lint"])
    report = consolidate(db, sid, None, clock)
    assert report.status == "done" and report.fallback_reasons == ()
    assert repo.active([P]) == [] and repo.staged(sid) == []
    assert [r["code"] for r in repo.audit_rows("event = 'op'")] == ["DROP", "DROP", "DROP"]


def test_fallback_within_session_later_note_wins(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    sid = session(repo)
    stage(db, clock, sid, "Run tests with `make test`.", keywords=["tests"])
    stage(db, clock, sid, "Run tests with `uv run pytest -q`.", keywords=["tests"], turn=1)
    report = consolidate(db, sid, None, clock)
    assert report.fallback_reasons == ("NO_MODEL",)
    assert active_texts(repo) == ["Run tests with `uv run pytest -q`."]
    assert repo.staged(sid) == []


def test_fallback_plan_is_pure_and_deterministic(repo: MemoryRepo) -> None:
    g = existing(repo, "Run tests with `make test`.", keywords=("tests",))
    s = MemoryNote(id="n_s", text="Run tests with `tox`.", keywords=("tests",), scope="project", scope_key=P,
                   kind="command", evidence="tool_verified", created="2026-01-07", last_update_date="2026-01-07",
                   source_session="run-1", source_turn=0, seq=99, status="staged")
    plans = [fallback_plan("project", P, [g], [s]) for _ in range(2)]
    assert plans[0] == plans[1]
    assert [n.text for n in plans[0].insert] == ["Run tests with `tox`."]
    assert [(n.id, r.split(":")[0]) for n, r in plans[0].archive] == [(g.id, "superseded_by")]


def test_global_notes_consolidate_into_global(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    sid = session(repo)
    stage(db, clock, sid, "Prefer small PRs: one concern per PR.", scope="global", kind="preference",
          keywords=["prs"])
    consolidate(db, sid, None, clock)
    assert active_texts(repo, "global") == ["Prefer small PRs: one concern per PR."]
    assert active_texts(repo) == []


def test_exact_duplicate_is_deduped_in_prepass(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    g = existing(repo, "Run `make lint` before commits.", keywords=("lint",))
    sid = session(repo)
    stage(db, clock, sid, "Run `make lint` before commits", keywords=["lint"])
    model = FakeLLM()
    report = consolidate(db, sid, model, clock)
    assert report.status == "done" and model.calls == []
    assert repo.find(g.id)[0].last_update_date == "2026-01-07"


def test_capacity_archives_oldest_unpinned(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    oldest = existing(repo, "Run `tool00` before commits.", date="2024-01-01", keywords=("tool00",), pinned=True)
    for i in range(1, MAX_ACTIVE_PER_SCOPE):
        existing(repo, f"Run `tool{i:02d}` before commits.", date=f"2025-{i % 12 + 1:02d}-01",
                 keywords=(f"tool{i:02d}",))
    sid = session(repo)
    stage(db, clock, sid, "Run `make lint` before commits.", keywords=["lint"])
    consolidate(db, sid, None, clock)
    active = repo.active([P])
    assert len(active) == MAX_ACTIVE_PER_SCOPE
    assert any(n.id == oldest.id for n in active)  # pinned survives although it is the oldest
    archived = repo.listing("archive_reason = 'capacity'", [])
    assert len(archived) == 1 and archived[0].last_update_date == "2025-01-01"


def test_idle_ttl_and_stale_lease(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    sid = session(repo)
    stage(db, clock, sid, "Run `make lint` before commits.", keywords=["lint"])
    assert consolidate_idle(db, None, clock) == []  # still active
    clock.advance(minutes=31)
    repo.update_session(sid, consolidation="running", lease_at="2026-01-07T09:00:00.000+00:00")
    clock.advance(minutes=1)
    assert consolidate(db, sid, None, clock).status == "done"  # a 32-minute-old lease is stale: taken over
    repo.ensure_session("run-2", P)
    repo.update_session("run-2", consolidation="running", lease_at=repo.now())
    assert consolidate(db, "run-2", None, clock).status == "skipped"  # a fresh lease is respected


def test_two_sessions_ending_together_are_serialized(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    """Both plan on the same version; the second to commit sees the bump, re-plans, and loses nothing."""
    import threading

    barrier = threading.Barrier(2, timeout=10)
    for sid, cmd in (("run-a", "make lint"), ("run-b", "make docs")):
        session(repo, sid)
        stage(db, clock, sid, f"Run `{cmd}` before commits.", keywords=[cmd.split()[1]])

    def answer(first: list[bool]) -> Any:
        def respond(request: ModelRequest) -> ModelResponse:
            if first:
                first.pop()
                barrier.wait()  # both have read the version before either commits
            aliases = [line.split('"')[3] for line in request.messages[1].content.splitlines() if '"id"' in line]
            return ops(*[{"op": "KEEP", "id": a} for a in aliases])
        return respond

    models = {sid: FakeLLM(steps=[answer([True]), answer([])]) for sid in ("run-a", "run-b")}
    reports: dict[str, Any] = {}
    threads = [threading.Thread(target=lambda s=sid: reports.__setitem__(s, consolidate(db, s, models[s], clock)))
               for sid in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert {s: r.status for s, r in reports.items()} == {"run-a": "done", "run-b": "done"}
    assert sorted(len(m.calls) for m in models.values()) == [1, 2]
    assert active_texts(repo) == ["Run `make docs` before commits.", "Run `make lint` before commits."]
    assert repo.version(P) == 2


def test_project_and_global_each_get_their_own_model_call(db: Database, repo: MemoryRepo,
                                                           clock: FrozenClock) -> None:
    import re

    sid = session(repo)
    stage(db, clock, sid, "Run `make lint` before commits.", keywords=["lint"])
    stage(db, clock, sid, "Prefer small PRs: one concern per PR.", scope="global", kind="preference",
          keywords=["prs"])
    drop = ops({"op": "DROP", "id": "S1", "reason": "not_actionable"})
    model = FakeLLM(matches=[(re.compile(r"SCOPE: project"), ops({"op": "KEEP", "id": "S1"})),
                             (re.compile(r"SCOPE: global"), drop)])
    report = consolidate(db, sid, model, clock)
    assert report.status == "done" and len(model.calls) == 2 and not report.fallback
    assert active_texts(repo) == ["Run `make lint` before commits."] and active_texts(repo, "global") == []


def test_notes_written_after_consolidation_reopen_the_session(db: Database, repo: MemoryRepo,
                                                              clock: FrozenClock) -> None:
    sid = session(repo)
    stage(db, clock, sid, "Run `make lint` before commits.", keywords=["lint"])
    assert consolidate(db, sid, None, clock).status == "done"
    stage(db, clock, sid, "Run `make docs` after API changes.", keywords=["docs"], turn=5)
    assert consolidate(db, sid, None, clock).status == "done"
    assert active_texts(repo) == ["Run `make docs` after API changes.", "Run `make lint` before commits."]
