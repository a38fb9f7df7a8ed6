"""The opencode adapter: the real transcript, errors and limits, and the fake opencode end to end."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from backendhelpers import (
    NOW,
    Harness,
    StubClock,
    fake_command,
    finish_lines,
    fix_calc_scenario,
    fixture_path,
    spec,
    wait_dead,
)

from onloop.backends import create_backend
from onloop.backends.base import AgentResult, AgentStatus
from onloop.backends.opencode import OpencodeBackend, OpencodeOptions, create
from onloop.errors import ConfigError
from onloop.safety import RealCallBlocked
from onloop.testing.fake_agents import CHILD_PID_FILE
from onloop.testing.scenario import Scenario
from onloop.usage import CostSource, Usage


def backend(**options: object) -> OpencodeBackend:
    return OpencodeBackend("oc", OpencodeOptions.model_validate(options), clock=StubClock())


def parse(lines: list[str], exit_code: int | None = 0, **options: object) -> AgentResult:
    return finish_lines(backend(**options).parser(), lines, exit_code)


def test_parses_the_real_transcript() -> None:
    result = backend().parse_log(fixture_path("opencode-success.jsonl"))
    assert result.status is AgentStatus.OK
    assert result.final_message == "Fixed `add()` in calc.py; both unit tests pass now."
    assert result.usage == Usage(input_tokens=900 + 1020 + 1140 + 1260, output_tokens=25 + 30 + 35 + 40)
    assert result.session_id == "ses_dfefbbc63ffeAfHBsaEvFq6W93"
    assert result.events == 12  # 2 texts, 3 tools x (call, result), 4 step_finish usages
    assert result.cost.amount == Decimal("0") and result.cost.source is CostSource.REPORTED


def test_event_kinds_and_tool_results() -> None:
    parser = backend().parser()
    events = [e for line in fixture_path("opencode-success.jsonl").read_text().splitlines() for e in parser.feed(line)]
    assert [e.kind for e in events] == ["message", "tool_call", "tool_result", "usage", "tool_call", "tool_result",
                                        "usage", "tool_call", "tool_result", "usage", "message", "usage"]
    assert events[7].summary.startswith("bash ")
    assert events[8].summary.startswith("exit 0: test_add")


def test_cost_is_unknown_behind_a_custom_url_unless_priced() -> None:
    path = fixture_path("opencode-success.jsonl")
    assert backend(model="fake", base_url="http://127.0.0.1:9/v1").parse_log(path).cost.source is CostSource.UNKNOWN
    priced = backend(model="fake", base_url="http://127.0.0.1:9/v1", prices={"input": "1", "output": "2"})
    assert priced.parse_log(path).cost.amount == Decimal("0.00458")  # 4320 * 1 + 130 * 2 per million


def test_cache_and_reasoning_tokens_follow_onloop_convention() -> None:
    finish = {"type": "step_finish", "sessionID": "s", "part": {"reason": "stop", "cost": 0.0031, "tokens": {
        "total": 2450, "input": 1200, "output": 300, "reasoning": 50, "cache": {"read": 800, "write": 100}}}}
    result = parse([json.dumps(finish)])
    assert result.usage == Usage(input_tokens=2100, output_tokens=350, cached_input_tokens=800)
    assert result.cost.amount == Decimal("0.0031")
    assert result.status is AgentStatus.OK


def test_truncated_log_keeps_usage_and_is_crashed(tmp_path: Path) -> None:
    lines = fixture_path("opencode-success.jsonl").read_text().splitlines()
    log = tmp_path / "cut.jsonl"
    log.write_text("\n".join(lines[:7]) + "\n" + lines[7][:40])  # cut inside the third step
    result = backend().parse_log(log)
    assert result.usage == Usage(900 + 1020, 25 + 30)
    assert result.status is AgentStatus.CRASHED
    assert result.session_id == "ses_dfefbbc63ffeAfHBsaEvFq6W93"


def test_errors_and_rate_limits() -> None:
    limit = {"type": "error", "sessionID": "s", "error": {"name": "APIError", "data": {
        "message": "Rate limit exceeded. Please try again in 20s.", "statusCode": 429}}}
    limited = parse([json.dumps(limit)])
    assert limited.status is AgentStatus.RATE_LIMITED
    assert limited.rate_limit_reset == NOW + timedelta(seconds=20)
    other = {"type": "error", "sessionID": "s", "error": {"name": "UnknownError", "data": {"message": "boom"}}}
    failed = parse([json.dumps(other)])
    assert failed.status is AgentStatus.FAILED and failed.error == "UnknownError: boom"
    lines = fixture_path("opencode-success.jsonl").read_text().splitlines()
    assert parse(lines, exit_code=1).status is AgentStatus.FAILED
    assert parse(lines, exit_code=-15).status is AgentStatus.CRASHED


def test_argv_env_and_config(harness: Harness, tmp_path: Path) -> None:
    b = backend(command=["oc-bin"], model="fake-model", base_url="http://127.0.0.1:9/v1",
                config_home=str(tmp_path / "oc-home"))
    request = harness.request()
    argv = b.argv(request)
    assert argv[:4] == ["oc-bin", "run", "--format", "json"]
    assert argv[argv.index("-m") + 1] == "onloop/fake-model"
    assert argv[argv.index("--dir") + 1] == str(harness.repo)
    assert request.prompt not in argv  # the prompt goes on stdin
    env = b.env(request)
    assert env["XDG_CONFIG_HOME"] == str((tmp_path / "oc-home" / "config").resolve())
    assert env["OPENCODE_DISABLE_PROJECT_CONFIG"] == "1"
    assert env["ONLOOP_OPENCODE_API_KEY"] == "onloop-local"
    config = json.loads(Path(env["OPENCODE_CONFIG"]).read_text())
    assert Path(env["OPENCODE_CONFIG"]) == Path(env["XDG_CONFIG_HOME"]) / "opencode" / "opencode.json"
    assert config["provider"]["onloop"]["options"] == {"baseURL": "http://127.0.0.1:9/v1",
                                                       "apiKey": "{env:ONLOOP_OPENCODE_API_KEY}"}
    assert config["provider"]["onloop"]["models"] == {"fake-model": {"name": "fake-model"}}
    # No named actions in the default policy: bash is denied altogether, and so is the web.
    assert config["permission"] == {"edit": "allow", "bash": {"*": "deny"}, "webfetch": "deny"}
    assert config["autoupdate"] is False and config["share"] == "disabled"


def test_options_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as bad_model:
        create(spec("opencode", {"model": "gpt-4o"}, tmp_path, name="oc"))
    assert bad_model.value.key == "backends.oc.model"
    with pytest.raises(ConfigError) as unknown:
        create(spec("opencode", {"modle": "x/y"}, tmp_path, name="oc"))
    assert unknown.value.key == "backends.oc.modle"


def test_registered_and_never_launches_the_real_binary(harness: Harness, tmp_path: Path) -> None:
    b = create_backend(spec("opencode", {"config_home": str(tmp_path / "h")}, tmp_path))
    assert isinstance(b, OpencodeBackend)
    with pytest.raises(RealCallBlocked):
        b.run(harness.request())


def fake_backend(harness: Harness, scenario: Scenario, **options: object) -> OpencodeBackend:
    command = fake_command("opencode", harness.scenario(scenario))
    return backend(command=command, config_home=str(harness.root / "oc-home"), **options)


def test_end_to_end_the_edit_lands_and_the_result_is_right(harness: Harness) -> None:
    b = fake_backend(harness, fix_calc_scenario(commands=(("git", "diff", "--stat"),)), model="local/fake")
    request = harness.request()
    result = b.run(request)
    assert result.status is AgentStatus.OK, result.error
    assert "return a + b" in (harness.repo / "calc.py").read_text()
    assert result.final_message == "Fixed add() in calc.py."
    assert result.usage == Usage(1200, 300)
    assert result.cost.amount == Decimal("0.0125") and result.cost.source is CostSource.REPORTED
    assert result.session_id is not None and result.session_id.startswith("ses_")
    # text, edit (call, result), command (call, result), usage, text, usage
    assert result.events == 8
    assert harness.events[4].summary.startswith("exit 0:")
    assert backend().parse_log(request.log_path).usage == Usage(1200, 300)


def test_end_to_end_rate_limit_then_retry(harness: Harness) -> None:
    b = fake_backend(harness, fix_calc_scenario(rate_limit_attempts=1, rate_limit_reset_in=5))
    limited = b.run(harness.request(attempt=1))
    assert limited.status is AgentStatus.RATE_LIMITED
    assert limited.rate_limit_reset == NOW + timedelta(seconds=5)
    assert b.run(harness.request(attempt=2)).status is AgentStatus.OK


def test_end_to_end_failures_and_hang(harness: Harness) -> None:
    assert fake_backend(harness, fix_calc_scenario(is_error=True)).run(harness.request()).status is AgentStatus.FAILED
    assert fake_backend(harness, fix_calc_scenario(exit_code=3)).run(
        harness.request(attempt=2)).status is AgentStatus.FAILED
    request = harness.request(attempt=3, timeout=1.5)
    started = time.monotonic()
    hung = fake_backend(harness, fix_calc_scenario(crash="hang")).run(request)
    assert hung.status is AgentStatus.TIMEOUT
    assert time.monotonic() - started < 1.5 + 2.0 + 3.0
    assert wait_dead(int((request.scratch_dir / CHILD_PID_FILE).read_text()))
