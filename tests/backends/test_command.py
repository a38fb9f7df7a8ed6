"""The generic `command` backend: text and JSON-lines agents, end to end with the fake command."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from backendhelpers import NOW, Harness, StubClock, fake_command, finish_lines, fix_calc_scenario, spec, wait_dead

from onloop.backends import create_backend
from onloop.backends.base import AgentResult, AgentStatus
from onloop.backends.command import CommandBackend, CommandOptions, create
from onloop.errors import ConfigError
from onloop.testing.fake_agents import CHILD_PID_FILE
from onloop.testing.scenario import Scenario
from onloop.usage import CostSource, Usage


def backend(**options: object) -> CommandBackend:
    return CommandBackend("cmd", CommandOptions.model_validate(options), clock=StubClock())


def parse(lines: list[str], exit_code: int | None = 0, **options: object) -> AgentResult:
    return finish_lines(backend(command=["x"], **options).parser(), lines, exit_code)


def test_text_output_final_message_and_status_from_the_exit_code() -> None:
    ok = parse(["working", "", "All done.", "  "])
    assert (ok.status, ok.final_message, ok.events, ok.usage) == (AgentStatus.OK, "All done.", 0, Usage())
    failed = parse(["boom"], exit_code=2)
    assert failed.status is AgentStatus.FAILED and "boom" in (failed.error or "")
    limited = parse(["Error: rate limit exceeded; try again in 30 seconds"], exit_code=1)
    assert limited.status is AgentStatus.RATE_LIMITED
    assert limited.rate_limit_reset == NOW + timedelta(seconds=30)
    assert parse(["x"], exit_code=-9).status is AgentStatus.CRASHED
    assert parse(["x"], exit_code=None).status is AgentStatus.CRASHED  # a replayed text log proves nothing


def test_jsonl_schema() -> None:
    lines = [
        json.dumps({"type": "message", "text": "Looking."}),
        "some noise that is not JSON",
        json.dumps({"type": "tool_call", "name": "edit", "input": {"path": "calc.py"}}),
        json.dumps({"type": "usage", "input_tokens": 100, "output_tokens": 10, "cost_usd": "0.001"}),
        json.dumps({"type": "usage", "input_tokens": 50, "output_tokens": 5, "cached_input_tokens": 20,
                    "cost_usd": 0.002}),
        json.dumps({"type": "result", "text": "Done.", "session_id": "s-1", "model": "m"}),
    ]
    result = parse(lines, output="jsonl")
    assert result.status is AgentStatus.OK
    assert result.final_message == "Done."
    assert result.usage == Usage(150, 15, 20)
    assert result.cost.amount == Decimal("0.003") and result.cost.source is CostSource.REPORTED
    assert (result.events, result.session_id, result.model) == (5, "s-1", "m")


def test_jsonl_verdicts_and_errors() -> None:
    denied = parse([json.dumps({"type": "result", "status": "denied", "text": "not allowed"})], output="jsonl")
    assert denied.status is AgentStatus.DENIED
    lying = parse([json.dumps({"type": "result", "status": "ok"})], exit_code=1, output="jsonl")
    assert lying.status is AgentStatus.FAILED  # a non-zero exit is never OK
    error = json.dumps({"type": "error", "message": "429 Too Many Requests"})
    limited = parse([error], exit_code=1, output="jsonl")
    assert limited.status is AgentStatus.RATE_LIMITED
    no_result = parse([json.dumps({"type": "message", "text": "last words"})], output="jsonl")
    assert (no_result.status, no_result.final_message) == (AgentStatus.OK, "last words")


def test_cost_from_prices_or_model_when_not_reported() -> None:
    usage_line = json.dumps({"type": "usage", "input_tokens": 1000, "output_tokens": 100})
    priced = parse([usage_line], output="jsonl", prices={"input": "2", "output": "8"})
    assert priced.cost.amount == Decimal("0.0028") and priced.cost.source is CostSource.PRICE_TABLE
    assert parse([usage_line], output="jsonl").cost.source is CostSource.UNKNOWN


def test_truncated_jsonl_log_keeps_the_usage(tmp_path: Path) -> None:
    log = tmp_path / "cut.jsonl"
    log.write_text(json.dumps({"type": "usage", "input_tokens": 7, "output_tokens": 3}) + '\n{"type": "usa')
    result = backend(command=["x"], output="jsonl").parse_log(log)
    assert result.usage == Usage(7, 3) and result.status is AgentStatus.CRASHED


def test_options(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigError) as missing:
        create(spec("command", {}, tmp_path, name="mine"))
    assert missing.value.key == "backends.mine.command"
    with pytest.raises(ConfigError) as bad:
        create(spec("command", {"command": ["x"], "output": "xml"}, tmp_path, name="mine"))
    assert bad.value.key == "backends.mine.output"
    with caplog.at_level(logging.WARNING):
        text = create_backend(spec("command", {"command": ["x"]}, tmp_path, name="mine"))
    assert "backend mine cannot report: structured_events, token_usage, cost" in caplog.text
    assert text.capabilities.structured_events is False
    assert create(spec("command", {"command": ["x"], "output": "jsonl"}, tmp_path)).capabilities.token_usage


def fake_backend(harness: Harness, scenario: Scenario, output: str = "text") -> CommandBackend:
    return backend(command=fake_command("command", harness.scenario(scenario), "--output", output), output=output,
                   env={"MY_SETTING": "1"})


@pytest.mark.parametrize("output", ["text", "jsonl"])
def test_end_to_end(harness: Harness, output: str) -> None:
    result = fake_backend(harness, fix_calc_scenario(claim_done=True), output).run(harness.request())
    assert result.status is AgentStatus.OK, result.error
    assert "return a + b" in (harness.repo / "calc.py").read_text()
    assert result.final_message.endswith("<onloop:done/>")
    if output == "jsonl":
        assert result.usage == Usage(1200, 300)
        assert result.cost.amount == Decimal("0.0125")
        assert result.events == 4  # message, tool_call, usage, result
    else:
        assert (result.events, result.usage) == (0, Usage())


def test_end_to_end_prompt_on_stdin_and_environment(harness: Harness) -> None:
    script = "import os, sys; print(sys.stdin.read().upper()); print(os.environ['MY_SETTING'])"
    b = backend(command=[sys.executable, "-c", script], env={"MY_SETTING": "on"})
    result = b.run(harness.request(prompt="fix it"))
    assert result.status is AgentStatus.OK
    assert harness.request().log_path.read_text() == "FIX IT\non\n"
    assert result.final_message == "on"


def test_end_to_end_rate_limit_exit_and_hang(harness: Harness) -> None:
    limited = fake_backend(harness, fix_calc_scenario(rate_limit_attempts=1, rate_limit_reset_in=9)).run(
        harness.request())
    assert limited.status is AgentStatus.RATE_LIMITED and limited.exit_code == 75
    assert limited.rate_limit_reset == NOW + timedelta(seconds=9)
    failed = fake_backend(harness, fix_calc_scenario(exit_code=4)).run(harness.request(attempt=2))
    assert failed.status is AgentStatus.FAILED and failed.exit_code == 4
    request = harness.request(attempt=3, timeout=1.5)
    started = time.monotonic()
    hung = fake_backend(harness, fix_calc_scenario(crash="hang")).run(request)
    assert hung.status is AgentStatus.TIMEOUT
    assert time.monotonic() - started < 1.5 + 2.0 + 3.0
    assert wait_dead(int((request.scratch_dir / CHILD_PID_FILE).read_text()))
