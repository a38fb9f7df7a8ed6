"""The Claude Code adapter on the real transcripts and its traps; the scripted agent end to end."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from backendhelpers import Harness, fix_calc_scenario, fixture_path, spec

from onloop.backends import create_backend
from onloop.backends.base import AgentStatus, PermissionDenial
from onloop.backends.claude_code import ClaudeCodeBackend, ClaudeOptions, ClaudeStreamParser, create
from onloop.errors import ConfigError
from onloop.policy.agent_cli import prepare_claude
from onloop.policy.model import Policy
from onloop.safety import RealCallBlocked
from onloop.usage import CostSource, Usage

SUCCESS = fixture_path("claude-success.jsonl")
MAX_TURNS = fixture_path("claude-max-turns.jsonl")


def backend(**options: object) -> ClaudeCodeBackend:
    return ClaudeCodeBackend("claude", ClaudeOptions.model_validate(options))


def parse(lines: list[str], exit_code: int | None, *, trust_cost: bool = True):  # type: ignore[no-untyped-def]
    parser = ClaudeStreamParser(trust_cost=trust_cost)
    for line in lines:
        parser.feed(line)
    return parser.finish(exit_code=exit_code, timed_out=False, log_path=None)


def with_result(path: Path, **changes: object) -> list[str]:
    """The transcript's lines with fields of its final result line replaced."""
    lines = path.read_text().splitlines()
    result = json.loads(lines[-1])
    result.update(changes)
    return [*lines[:-1], json.dumps(result)]


def test_parses_the_real_stream_json_transcript() -> None:
    result = backend().parse_log(SUCCESS)
    assert result.status is AgentStatus.OK
    assert result.final_message == "Fixed `add()` in calc.py (it returned `a - b`). Both tests now pass."
    assert result.usage == Usage(input_tokens=7200, output_tokens=220, cached_input_tokens=0)
    assert result.session_id == "e523e682-e8d2-4673-9370-81e85f79ef76"
    assert result.model == "claude-opus-4-8[1m]"
    # system, 3 texts, 5 tool calls, 4 tool results, result
    assert result.events == 13
    assert result.cost.amount == Decimal("0.041499999999999995") and result.cost.source is CostSource.REPORTED


def test_the_non_stream_json_format_is_read_too() -> None:
    # `--output-format json` prints the stream's final result object alone, so the same parser reads it:
    # usage, cost, session and final message are all in it; only the live events are missing.
    result = backend().parse_log(fixture_path("claude-success-json.json"))
    assert result.status is AgentStatus.OK
    assert result.final_message == "Fixed `add()` in calc.py (it returned `a - b`). Both tests now pass."
    assert result.usage == Usage(7200, 220)
    assert result.session_id == "e84996e1-ca39-46cd-955a-5d26071dbea7"
    assert result.events == 1


def test_max_turns_is_max_turns() -> None:
    result = backend().parse_log(MAX_TURNS)
    assert result.status is AgentStatus.MAX_TURNS
    assert result.usage == Usage(1500, 40)
    assert result.events == 7
    assert result.session_id == "8e2f6356-4ef2-49e6-acf9-bc2fbcc64f7e"
    assert "maximum number of turns" in (result.error or "")


def test_max_turns_stays_max_turns_when_the_agent_talked_about_rate_limits() -> None:
    lines = MAX_TURNS.read_text().splitlines()
    talk = json.loads(lines[1])
    talk["message"]["content"][0]["text"] = "The rate limiter returns 429 too early; try again in 5 seconds."
    result = parse([lines[0], json.dumps(talk), *lines[2:]], exit_code=1)
    assert result.status is AgentStatus.MAX_TURNS
    assert result.rate_limit_reset is None


def test_exit_1_with_subtype_success_and_is_error_is_failed() -> None:
    lines = with_result(SUCCESS, is_error=True, result="API Error: Unable to connect to API (ConnectionRefused)")
    result = parse(lines, exit_code=1)
    assert result.status is AgentStatus.FAILED
    assert result.error == "API Error: Unable to connect to API (ConnectionRefused)"
    assert parse(with_result(SUCCESS), exit_code=1).status is AgentStatus.FAILED  # the exit code alone says so


def test_usage_limit_is_rate_limited_with_the_reset_time() -> None:
    lines = with_result(SUCCESS, is_error=True, result="Claude AI usage limit reached|1767225600")
    result = parse(lines, exit_code=1)
    assert result.status is AgentStatus.RATE_LIMITED
    assert result.rate_limit_reset == datetime(2026, 1, 1, tzinfo=UTC)
    api = parse(with_result(SUCCESS, is_error=True, api_error_status=429, result="API Error: 429"), exit_code=1)
    assert api.status is AgentStatus.RATE_LIMITED


def test_custom_base_url_makes_the_cost_unknown() -> None:
    result = backend(base_url="http://127.0.0.1:18181").parse_log(SUCCESS)
    assert result.cost.source is CostSource.UNKNOWN and result.cost.amount is None
    assert result.usage == Usage(7200, 220)  # the tokens are still recorded


def test_permission_denials_are_listed() -> None:
    denial = [{"tool_name": "Bash", "tool_use_id": "t", "tool_input": {"command": "curl x"}}]
    ok = parse(with_result(SUCCESS, permission_denials=denial), exit_code=0)
    assert ok.status is AgentStatus.OK and ok.permission_denials == (PermissionDenial("Bash", "curl x"),)
    denied = parse(with_result(SUCCESS, is_error=True, result="blocked", permission_denials=denial), exit_code=1)
    assert denied.status is AgentStatus.DENIED


def test_truncated_log_recovers_the_streamed_usage(tmp_path: Path) -> None:
    lines = SUCCESS.read_text().splitlines()
    log = tmp_path / "cut.jsonl"
    log.write_text("\n".join(lines[:-2]) + "\n" + lines[-2][:100])  # cut inside the last assistant message
    result = backend().parse_log(log)
    assert result.status is AgentStatus.CRASHED
    # each of the three complete messages counted once, though streamed in several lines
    assert result.usage == Usage(input_tokens=1500 + 1700 + 1900, output_tokens=3)
    assert result.session_id == "e523e682-e8d2-4673-9370-81e85f79ef76"


def test_argv_and_options(harness: Harness, tmp_path: Path) -> None:
    request = harness.request()
    setup = prepare_claude(Policy(), request.worktree, request.scratch_dir)
    argv = backend(command=["claude-bin"], max_turns=7).argv(request, setup)
    assert argv[:5] == ["claude-bin", "-p", "--output-format", "stream-json", "--verbose"]
    assert argv[argv.index("--setting-sources") + 1] == "user"
    assert argv[argv.index("--max-turns") + 1] == "7"
    settings = json.loads(Path(argv[argv.index("--settings") + 1]).read_text())
    assert settings["sandbox"]["enabled"] is True and settings["sandbox"]["failIfUnavailable"] is True
    assert settings["sandbox"]["allowUnsandboxedCommands"] is False
    hook = settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
    assert str(setup.guard_file) in hook and not setup.guard_file.is_relative_to(request.worktree)
    with pytest.raises(ConfigError, match="switches off"):
        backend(command=["claude-bin"], extra_args=["--dangerously-skip-permissions"]).argv(request, setup)
    with pytest.raises(ConfigError) as err:
        create(spec("claude_code", {"max_turns": 0}, tmp_path, name="cc"))
    assert err.value.key == "backends.cc.max_turns"
    with pytest.raises(RealCallBlocked):
        create(spec("claude_code", {}, tmp_path)).run(harness.request())


def scripted(harness: Harness, scenario_path: Path):  # type: ignore[no-untyped-def]
    rel = scenario_path.relative_to(harness.root)
    return create_backend(spec("scripted", {"scenario": str(rel)}, harness.root))


def test_end_to_end_through_the_scripted_agent(harness: Harness) -> None:
    b = scripted(harness, harness.scenario(fix_calc_scenario(claim_done=True)))
    request = harness.request()
    result = b.run(request)
    assert result.status is AgentStatus.OK, result.error
    assert "return a + b" in (harness.repo / "calc.py").read_text()
    assert result.final_message == "Fixed add() in calc.py.\n\n<onloop:done/>"
    assert result.usage == Usage(1200, 300)
    assert result.cost.amount == Decimal("0.0125")
    assert b.parse_log(request.log_path).usage == Usage(1200, 300)


def test_end_to_end_usage_limit_and_timeout(harness: Harness) -> None:
    limited = scripted(harness, harness.scenario(fix_calc_scenario(rate_limit_attempts=1, rate_limit_reset_in=60)))
    result = limited.run(harness.request())
    assert result.status is AgentStatus.RATE_LIMITED
    assert result.rate_limit_reset is not None
    hang = scripted(harness, harness.scenario(fix_calc_scenario(crash="hang")))
    started = time.monotonic()
    timed_out = hang.run(harness.request(attempt=2, timeout=1.5))
    assert timed_out.status is AgentStatus.TIMEOUT
    assert time.monotonic() - started < 1.5 + 2.0 + 3.0
