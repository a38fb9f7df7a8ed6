"""The built-in agent's loop with scripted models, on real files in real git repositories."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from agenthelpers import answer, call, guardrails, kinds, make_request, tools

from onloop.agent import ActionSpec, AgentOptions, parse_log, run_agent
from onloop.backends.base import AgentEvent, AgentStatus
from onloop.models.base import ModelError, ModelRequest, ModelResponse
from onloop.testing.models import FunctionModel, ScriptedModel
from onloop.usage import CostSource, Usage


@pytest.fixture
def repo(make_repo) -> Path:  # type: ignore[no-untyped-def]
    return make_repo({"src/app.py": "def add(a, b):\n    return a - b\n", "IMPLEMENTATION_PLAN.md": "- [ ] fix add\n"})


def test_path_escapes_are_refused_reported_and_told_to_the_model(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret")
    (repo / "link").symlink_to(outside)
    model = ScriptedModel([
        tools(call("read_file", "c1", path=str(outside / "secret.txt")),
              call("read_file", "c2", path="../outside"), call("read_file", "c3", path="link/secret.txt"),
              call("write_file", "c4", path="../evil.txt", content="x")),
        answer("gave up"),
    ])
    events: list[AgentEvent] = []
    result = run_agent(model, make_request(repo, tmp_path, events))
    model.assert_complete()
    assert result.status is AgentStatus.OK and result.final_message == "gave up"
    assert [g["guardrail"] for g in guardrails(events)] == ["path_escape"] * 4
    assert [g["path"] for g in guardrails(events)][1:] == ["../outside", "link/secret.txt", "../evil.txt"]
    tool_messages = [m for m in model.requests[1].messages if m.role == "tool"]
    assert len(tool_messages) == 4 and all(m.content.startswith("refused:") for m in tool_messages)
    assert "top secret" not in json.dumps([m.content for m in tool_messages])
    assert not (tmp_path / "evil.txt").exists()


def test_huge_action_output_is_truncated_with_full_output_kept(repo: Path, tmp_path: Path) -> None:
    script = "print('FIRST'); print('y' * 200000); print('LAST')"
    actions = {"spam": ActionSpec((sys.executable, "-c", script), timeout=30)}
    model = ScriptedModel([tools(call("run_action", name="spam")), answer("done")])
    events: list[AgentEvent] = []
    run_agent(model, make_request(repo, tmp_path, events), actions=actions,
              options=AgentOptions(max_tool_output_bytes=2000))
    (tool_message,) = [m for m in model.requests[1].messages if m.role == "tool"]
    assert "FIRST" in tool_message.content and "LAST" in tool_message.content
    assert len(tool_message.content.encode()) < 2300
    (result_event,) = [e for e in events if e.kind == "tool_result"]
    full = Path(result_event.data["full_output"])
    assert result_event.data["omitted_bytes"] > 190_000 and full.is_relative_to(tmp_path / "scratch")
    assert "y" * 200000 in full.read_text()


def test_turn_cap(repo: Path, tmp_path: Path) -> None:
    model = FunctionModel(lambda request: tools(call("list_dir", f"c{len(request.messages)}")))
    result = run_agent(model, make_request(repo, tmp_path), options=AgentOptions(max_turns=4))
    assert result.status is AgentStatus.MAX_TURNS and len(model.requests) == 4
    assert result.usage == Usage(400, 40)


def test_budget_stops_mid_run(repo: Path, tmp_path: Path) -> None:
    model = FunctionModel(lambda request: tools(call("list_dir"), cost="0.01"))
    request = make_request(repo, tmp_path, budget_remaining_usd=Decimal("0.025"))
    result = run_agent(model, request)
    assert result.status is AgentStatus.FAILED and result.error == "budget"
    assert len(model.requests) == 3  # 0.01, 0.02 < 0.025 go on; 0.03 stops before the 4th call
    assert result.cost.amount == Decimal("0.03") and result.cost.source is CostSource.PRICE_TABLE


def test_rate_limit_ends_with_reset(repo: Path, tmp_path: Path) -> None:
    reset = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
    model = ScriptedModel([tools(call("list_dir")), ModelError("429", rate_limited=True, reset_at=reset, status=429)])
    events: list[AgentEvent] = []
    result = run_agent(model, make_request(repo, tmp_path, events))
    assert result.status is AgentStatus.RATE_LIMITED and result.rate_limit_reset == reset
    assert not result.failed and "rate_limit" in kinds(events)
    assert parse_log(tmp_path / "agent.jsonl").rate_limit_reset == reset


def test_model_error_fails(repo: Path, tmp_path: Path) -> None:
    result = run_agent(ScriptedModel([ModelError("HTTP 500 boom", status=500)]), make_request(repo, tmp_path))
    assert result.status is AgentStatus.FAILED and "boom" in (result.error or "")


def test_timeout_by_wall_clock(repo: Path, tmp_path: Path) -> None:
    class SteppingClock:
        def __init__(self) -> None:
            self.t = 0.0

        def now(self) -> datetime:
            return datetime(2026, 1, 1, tzinfo=UTC)

        def monotonic(self) -> float:
            self.t += 40.0
            return self.t

        def sleep(self, seconds: float) -> None:
            raise AssertionError

    model = FunctionModel(lambda request: tools(call("list_dir")))
    result = run_agent(model, make_request(repo, tmp_path, timeout=100.0), clock=SteppingClock())
    assert result.status is AgentStatus.TIMEOUT and 1 <= len(model.requests) <= 3


def test_bad_arguments_and_unknown_tools_are_answered(repo: Path, tmp_path: Path) -> None:
    from onloop.models.base import ToolCall

    model = ScriptedModel([
        tools(call("read_file", "c1", path=3), call("rm_rf", "c2"), ToolCall("c3", "read_file", {}, "{oops"),
              call("run_action", "c4", name="deploy"), call("read_file", "c5", path="src/app.py", extra=1)),
        answer("ok"),
    ])
    run_agent(model, make_request(repo, tmp_path), actions={"test": ActionSpec(("true",))})
    contents = [m.content for m in model.requests[1].messages if m.role == "tool"]
    assert contents[0].startswith("invalid arguments for read_file: path:")
    assert contents[1].startswith("unknown tool 'rm_rf'")
    assert contents[2].startswith("the arguments are not a JSON object")
    assert contents[3] == "no action named 'deploy'; allowed: test"
    assert "extra" in contents[4]


def test_memory_note_and_log_and_parse_log(repo: Path, tmp_path: Path) -> None:
    model = ScriptedModel([
        tools(call("save_memory_note", note="tests need PYTHONPATH=src", tags=["tests"]), cost="0.002"),
        answer("noted", cost="0.001"),
    ])
    events: list[AgentEvent] = []
    request = make_request(repo, tmp_path, events, run_id="r1", iteration=3)
    result = run_agent(model, request)
    notes = [json.loads(line) for line in (tmp_path / "scratch" / "memory_notes.jsonl").read_text().splitlines()]
    assert notes[0]["note"] == "tests need PYTHONPATH=src" and notes[0]["run_id"] == "r1" and notes[0]["iteration"] == 3
    lines = (tmp_path / "agent.jsonl").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == kinds(events) and result.events == len(lines)
    rebuilt = parse_log(tmp_path / "agent.jsonl")
    assert (rebuilt.status, rebuilt.usage, rebuilt.cost, rebuilt.final_message) == \
        (result.status, result.usage, result.cost, "noted")
    assert result.cost.amount == Decimal("0.003")


def test_parse_log_after_a_crash_keeps_usage(repo: Path, tmp_path: Path) -> None:
    def crash(request: ModelRequest) -> ModelResponse:
        raise RuntimeError("onloop died")

    model = ScriptedModel([tools(call("list_dir"), cost="0.004"), crash])
    with pytest.raises(RuntimeError):
        run_agent(model, make_request(repo, tmp_path))
    log = tmp_path / "agent.jsonl"
    log.write_text(log.read_text() + '{"kind": "usage", "da')  # a half-written last line
    rebuilt = parse_log(log)
    assert rebuilt.status is AgentStatus.CRASHED
    assert rebuilt.usage == Usage(100, 10) and rebuilt.cost.amount == Decimal("0.004")


def test_unknown_cost_is_reported_once(repo: Path, tmp_path: Path) -> None:
    from onloop.usage import Cost

    unknown = ModelResponse(text="", tool_calls=(call("list_dir"),), usage=Usage(1, 1), cost=Cost.unknown())
    model = ScriptedModel([unknown, unknown, answer("done")])
    events: list[AgentEvent] = []
    result = run_agent(model, make_request(repo, tmp_path, events, budget_remaining_usd=Decimal("1")))
    assert [e.data.get("warning") for e in events].count("cost_unknown") == 1
    assert result.cost.source is CostSource.UNKNOWN
