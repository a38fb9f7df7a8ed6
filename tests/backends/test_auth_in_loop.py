"""Refused credentials and rate limits through the real loop, for each backend kind that talks to a model.

- claude_code: the real adapter, with the scripted agent as its `command` (it speaks Claude Code's
  stream-json and retries a refused key as the real CLI does: ten times, minutes, unless
  CLAUDE_CODE_MAX_RETRIES says otherwise);
- codex: the real adapter with the fake `codex exec` (five retries with a growing backoff);
- builtin: onloop's own agent against the fake model server answering 401 over real HTTP.

A refused key stops the run at once with `agent_error` (exit 15) and a message naming the variable,
within seconds; a rate limit is waited out and the same iteration retried (README, "Backends").
Everything but the agent is real: git, the sandbox, the gates, SQLite.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tests.loop.helpers import receipts, workspace

from onloop.loop.api import start_run
from onloop.loop.stop import StopReason
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.testing import FakeModelServer, Turn
from onloop.testing.scenario import Edit, Scenario, Step

SCENARIO = ".fake-agent-scenario.json"
STEP = Step(message="Added mul().", edits=(Edit("calc.py", append="\n\ndef mul(a, b):\n    return a * b\n"),),
            plan_check=("mul",), claim_done=True)
AGENT_BOUND_SECONDS = 6.0  # the agent call: the CLI's own retries (bounded by onloop) and a kill's grace
RUN_BOUND_SECONDS = 20.0  # the whole run: baseline, one agent call, rollback, receipt
KEY_VARIABLE = {"claude_code": "ANTHROPIC_API_KEY", "codex": "CODEX_API_KEY", "builtin": "ONLOOP_TEST_MODEL_KEY"}


def cli_backend(kind: str) -> str:
    if kind == "claude_code":
        argv = [sys.executable, "-m", "onloop.testing.scripted_agent", "--scenario", SCENARIO]
    else:
        argv = [sys.executable, "-m", "onloop.testing.fake_agents", kind, "--scenario", SCENARIO]
    return f'[backends.agent]\nkind = "{kind}"\ncommand = {json.dumps(argv)}\n'


def builtin_backend(server: FakeModelServer) -> str:
    return (f'[backends.agent]\nkind = "builtin"\nprovider = "openai"\nmodel = "fake-model"\n'
            f'base_url = "{server.openai_base_url}"\napi_key_env = "ONLOOP_TEST_MODEL_KEY"\n')


def run(make_repo: Any, tmp_path: Path, step: Step, backend: str, **options: Any) -> tuple[Any, Database, float]:
    files = {SCENARIO: json.dumps(Scenario((step,)).to_dict())}
    repo = workspace(make_repo, tmp_path, Scenario(()), items=["mul: multiply two numbers"], files=files,
                     extra=backend, **options)
    db = Database.open_default()
    started = time.monotonic()
    outcome = start_run(repo, db=db, backend="agent")
    return outcome, db, time.monotonic() - started


def agent_seconds(db: Database, run_id: str) -> float:
    """From the start of iteration 1 to the end of its agent call, by the run's own event log."""
    stamps = {e["kind"]: datetime.fromisoformat(e["ts"]) for e in store.events_after(db, run_id)
              if e["kind"] in ("iteration_started", "agent_finished")}
    return (stamps["agent_finished"] - stamps["iteration_started"]).total_seconds()


@pytest.fixture(autouse=True)
def _model_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONLOOP_TEST_MODEL_KEY", "sk-refused")


def assert_stopped_at_once(outcome: Any, db: Database, seconds: float, kind: str) -> None:
    row = store.get_run(db, outcome.run_id)
    assert (outcome.reason, outcome.exit_code, outcome.iterations) == (StopReason.AGENT_ERROR, 15, 1), row.stop_detail
    assert seconds < RUN_BOUND_SECONDS, f"a refused key took {seconds:.1f}s to stop the run"
    agent = agent_seconds(db, outcome.run_id)
    assert agent < AGENT_BOUND_SECONDS, f"the agent call on a refused key took {agent:.1f}s"
    assert f"{kind} backend 'agent'" in outcome.detail and KEY_VARIABLE[kind] in outcome.detail
    assert row.stop_detail == outcome.detail
    receipt = receipts(db, outcome.run_id)[0]
    assert receipt["agent_status"] == "auth_failed" and receipt["status"] == "rolled_back"
    assert receipt["attempts"] == 1


@pytest.mark.parametrize("kind", ["claude_code", "codex"])
def test_a_refused_key_stops_a_cli_backend_at_once(make_repo, tmp_path: Path, kind: str) -> None:  # type: ignore[no-untyped-def]
    outcome, db, seconds = run(make_repo, tmp_path, replace(STEP, auth_failure=True), cli_backend(kind),
                               run='agent_error_limit = 3')
    assert_stopped_at_once(outcome, db, seconds, kind)


def test_a_refused_key_stops_the_builtin_agent_at_once(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with FakeModelServer([], default=Turn.failure(401, "Incorrect API key provided: sk-ref***sed")) as server:
        outcome, db, seconds = run(make_repo, tmp_path, STEP, builtin_backend(server))
        requests = [r for r in server.requests if r.wire != "models"]
    assert_stopped_at_once(outcome, db, seconds, "builtin")
    assert len(requests) == 1, "the builtin agent asks once: onloop, not the SDK, decides about retries"
    assert requests[0].headers["authorization"] == "Bearer sk-refused"


@pytest.mark.parametrize("kind", ["claude_code", "codex"])
def test_a_rate_limit_is_waited_out_and_the_iteration_retried(make_repo, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                              kind: str) -> None:
    step = replace(STEP, rate_limit_attempts=1, rate_limit_reset_in=1.0)
    outcome, db, _ = run(make_repo, tmp_path, step, cli_backend(kind))
    assert outcome.reason is StopReason.DONE, store.get_run(db, outcome.run_id).stop_detail
    receipt = receipts(db, outcome.run_id)[0]
    assert receipt["attempts"] == 2 and receipt["agent_status"] == "ok"
    assert receipt["rate_limits"][0]["action"].startswith("waited")
    assert store.get_run(db, outcome.run_id).agent_error_streak == 0


def test_a_rate_limit_of_the_builtin_agent_is_waited_out(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from onloop.testing import tool_call

    turns = [Turn.rate_limited(headers={"retry-after": "1"}),
             Turn(tool_calls=(tool_call("apply_patch", path="calc.py", edits=[
                 {"search": "return a + b\n", "replace": "return a + b\n\n\ndef mul(a, b):\n    return a * b\n"}]),)),
             Turn(tool_calls=(tool_call("update_plan", action="check", item="mul"),)),
             Turn(text="Added mul(). <onloop:done/>")]
    with FakeModelServer(turns) as server:
        outcome, db, _ = run(make_repo, tmp_path, STEP, builtin_backend(server))
    assert outcome.reason is StopReason.DONE, store.get_run(db, outcome.run_id).stop_detail
    receipt = receipts(db, outcome.run_id)[0]
    assert receipt["attempts"] == 2 and receipt["rate_limits"][0]["action"].startswith("waited")


def test_denied_writes_are_an_event_a_column_and_feedback_not_a_false_claim(make_repo,  # type: ignore[no-untyped-def]
                                                                            tmp_path: Path) -> None:
    """The run of the real capture `claude-permission-denied.jsonl`, through the loop: the agent's
    Edit is refused and its final message says so. Not a hallucination; the next iteration is told."""
    denied = Step(message="I could not change calc.py: permission to edit it was denied. I'd need permission "
                          "to edit calc.py to add mul().",
                  edits=(Edit("calc.py", append="\n\ndef mul(a, b):\n    return a * b\n", denied=True),))
    files = {SCENARIO: json.dumps(Scenario((denied, STEP)).to_dict())}
    repo = workspace(make_repo, tmp_path, Scenario(()), items=["mul: multiply two numbers"], files=files,
                     extra=cli_backend("claude_code"))
    db = Database.open_default()

    outcome = start_run(repo, db=db, backend="agent")

    assert outcome.reason is StopReason.DONE, store.get_run(db, outcome.run_id).stop_detail
    first, second = store.get_iterations(db, outcome.run_id)
    assert (first["permission_denials"], second["permission_denials"]) == (1, 0)
    assert first["agent_status"] == "ok"
    events = [e for e in store.events_after(db, outcome.run_id) if e["kind"] == "permission_denied"]
    assert len(events) == 1 and events[0]["iteration"] == 1
    assert events[0]["message"] == "agent: 1 action(s) denied: Write calc.py"
    assert not [i for i in store.incidents(db, outcome.run_id) if i["kind"] == "hallucination"]
    feedback = json.loads(first["receipt_json"])["feedback"]
    assert "These actions were denied: Write calc.py." in feedback
    context = Path(store.get_run(db, outcome.run_id).worktree).parent / "logs" / "iteration-002.context.md"
    assert "These actions were denied: Write calc.py." in context.read_text()
