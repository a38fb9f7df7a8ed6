"""The Codex adapter: the real transcripts, the traps, and the fake `codex exec` end to end."""

from __future__ import annotations

import json
import subprocess
import time
import tomllib
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
from onloop.backends.codex import CodexBackend, CodexOptions, CodexStreamParser, create
from onloop.errors import BackendError, ConfigError
from onloop.process import NoSandbox, ProcessSpec
from onloop.safety import RealCallBlocked
from onloop.testing.fake_agents import CHILD_PID_FILE
from onloop.testing.scenario import Scenario
from onloop.usage import CostSource, Usage


def backend(name: str = "cx", **options: object) -> CodexBackend:
    return CodexBackend(name, CodexOptions.model_validate(options), clock=StubClock())


def parse_lines(lines: list[str], *, exit_code: int | None = 0, **options: object) -> AgentResult:
    return finish_lines(backend(**options).parser(), lines, exit_code)


def test_parses_the_real_success_transcript() -> None:
    result = backend().parse_log(fixture_path("codex-success.jsonl"))
    assert result.status is AgentStatus.OK
    assert result.final_message == (
        "Fixed `add()` in `calc.py` (it subtracted). `python3 -m unittest -v` now passes: 2 tests OK."
    )
    assert result.usage == Usage(input_tokens=5700, output_tokens=150, cached_input_tokens=0)
    assert result.session_id == "01a20104-09e4-7dc0-9147-b3f47489bc2d"
    # thread + 2 commands (call, result) + 1 file change (call, result) + 2 messages + usage
    assert result.events == 10
    assert result.cost.source is CostSource.UNKNOWN  # no model configured: nothing to price
    assert result.raw_log_path == fixture_path("codex-success.jsonl")


def test_event_kinds_follow_the_transcript() -> None:
    parser = backend().parser()
    kinds = [e.kind for line in fixture_path("codex-success.jsonl").read_text().splitlines() for e in parser.feed(line)]
    assert kinds == ["system", "tool_call", "tool_result", "message", "tool_call", "tool_result",
                     "tool_call", "tool_result", "message", "usage"]


def test_failing_commands_and_warning_items_do_not_fail_the_run() -> None:
    result = backend().parse_log(fixture_path("codex-failing-command.jsonl"))
    assert result.status is AgentStatus.OK
    assert result.usage == Usage(4050, 105, 0)
    assert result.events == 8  # thread, warning, 2 x (call, result), message, usage
    assert result.final_message.startswith("The suite fails: `test_add` expects 5")
    assert result.session_id == "01a20104-10d8-7be3-a53b-3620be462345"


def test_cost_comes_from_the_price_table_for_a_known_model_and_is_unknown_behind_a_custom_url() -> None:
    known = backend(model="gpt-5.5").parse_log(fixture_path("codex-success.jsonl"))
    assert known.cost.source is CostSource.PRICE_TABLE
    assert known.cost.amount is not None and known.cost.amount > 0
    local = backend(model="gpt-5.5", base_url="http://127.0.0.1:9/v1").parse_log(fixture_path("codex-success.jsonl"))
    assert local.cost.source is CostSource.UNKNOWN and local.cost.amount is None
    priced = backend(model="x", base_url="http://127.0.0.1:9/v1", prices={"input": "1", "output": "10"}).parse_log(
        fixture_path("codex-success.jsonl")
    )
    assert priced.cost.source is CostSource.PRICE_TABLE
    assert priced.cost.amount == Decimal("0.0072")  # 5700 * 1 + 150 * 10 per million


def test_usage_is_summed_across_turns_and_a_truncated_log_keeps_what_was_seen(tmp_path: Path) -> None:
    lines = fixture_path("codex-success.jsonl").read_text().splitlines()
    second_turn = ['{"type":"turn.started"}', lines[5],
                   '{"type":"turn.completed","usage":{"input_tokens":300,"cached_input_tokens":100,"output_tokens":7}}']
    both = parse_lines(lines + second_turn)
    assert both.usage == Usage(6000, 157, 100)
    log = tmp_path / "cut.jsonl"
    log.write_text("\n".join([*lines, *second_turn[:2]]) + '\n{"type":"item.completed","item":{"id":"it')
    cut = backend().parse_log(log)
    assert cut.usage == Usage(5700, 150, 0)
    assert cut.status is AgentStatus.OK  # the first turn did complete; the cut-off turn added nothing
    only_started = tmp_path / "cut2.jsonl"
    only_started.write_text("\n".join(lines[:6]) + '\n{"type":"item.sta')
    assert backend().parse_log(only_started).status is AgentStatus.CRASHED


def test_reconnect_errors_do_not_end_the_run() -> None:
    lines = fixture_path("codex-success.jsonl").read_text().splitlines()
    reconnect = '{"type":"error","message":"Reconnecting... 1/5 (stream disconnected before completion)"}'
    result = parse_lines([lines[0], reconnect, reconnect, *lines[1:]])
    assert result.status is AgentStatus.OK
    assert result.events == 12  # the two reconnects are recorded as error events


def test_the_real_dead_endpoint_transcript_is_an_unfinished_run() -> None:
    # Captured from codex-cli 0.169.0 by the opt-in real-CLI test: it never exits, the log just stops.
    result = backend().parse_log(fixture_path("codex-dead-endpoint.jsonl"))
    assert result.status is AgentStatus.CRASHED
    assert result.usage == Usage() and result.session_id == "01a2012d-b27f-7142-b73e-57b1783b91a8"
    last = fixture_path("codex-dead-endpoint.jsonl").read_text().splitlines()[-1]
    assert [e.kind for e in backend().parser().feed(last)] == ["error"]  # a reconnect is not a limit


def test_usage_limit_is_rate_limited_with_the_reset_time() -> None:
    message = "You've hit your usage limit. Upgrade to Pro or try again in 2 hours 5 minutes."
    result = parse_lines([
        '{"type":"thread.started","thread_id":"t1"}', '{"type":"turn.started"}',
        json.dumps({"type": "error", "message": message}),
        json.dumps({"type": "turn.failed", "error": {"message": message}}),
    ], exit_code=1)
    assert result.status is AgentStatus.RATE_LIMITED
    assert result.rate_limit_reset == NOW + timedelta(hours=2, minutes=5)
    assert result.session_id == "t1"
    assert "usage limit" in (result.error or "")


def test_a_429_after_retries_is_rate_limited_without_a_reset_time() -> None:
    message = "exceeded retry limit, last status: 429 Too Many Requests, request id: abc"
    result = parse_lines([json.dumps({"type": "turn.failed", "error": {"message": message}})], exit_code=1)
    assert result.status is AgentStatus.RATE_LIMITED
    assert result.rate_limit_reset is None


def test_other_failures() -> None:
    failed = parse_lines([json.dumps({"type": "turn.failed", "error": {"message": "stream error: 500"}})])
    assert failed.status is AgentStatus.FAILED and failed.error == "stream error: 500"
    lines = fixture_path("codex-success.jsonl").read_text().splitlines()
    assert parse_lines(lines, exit_code=3).status is AgentStatus.FAILED
    assert parse_lines(lines[:4], exit_code=-9).status is AgentStatus.CRASHED
    parser = backend().parser()
    assert isinstance(parser, CodexStreamParser)
    assert parser.finish(exit_code=None, timed_out=True, log_path=None).status is AgentStatus.TIMEOUT


def test_argv_and_config(harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "codex-home"
    b = backend(command=["codex-bin"], model="gpt-5.5", base_url="http://127.0.0.1:9/v1", codex_home=str(home))
    request = harness.request()
    argv = b.argv(request)
    assert argv[:4] == ["codex-bin", "exec", "--json", "--ephemeral"]
    assert argv[-1] == "-"  # the prompt comes on stdin
    assert "--trust" not in argv
    assert argv[argv.index("-C") + 1] == str(harness.repo)
    assert argv[argv.index("-m") + 1] == "gpt-5.5"
    assert 'approval_policy="never"' in argv and "sandbox_workspace_write.exclude_slash_tmp=true" in argv
    env = b.env(request)
    assert env["CODEX_HOME"] == str(home.resolve())
    assert env["ONLOOP_CODEX_API_KEY"] == "onloop-local"
    config = tomllib.loads((home / "config.toml").read_text())
    assert config["model_provider"] == "onloop"
    assert config["model_providers"]["onloop"] == {
        "name": "onloop cx", "base_url": "http://127.0.0.1:9/v1", "env_key": "ONLOOP_CODEX_API_KEY",
        "wire_api": "responses"}
    assert config["approval_policy"] == "never"
    assert config["sandbox_workspace_write"]["exclude_slash_tmp"] is True
    monkeypatch.setenv("MY_KEY", "sk-test")
    keyed = backend(command=["codex-bin"], base_url="http://127.0.0.1:9/v1", api_key_env="MY_KEY",
                    codex_home=str(home))
    assert keyed.env(request)["MY_KEY"] == "sk-test"
    assert tomllib.loads((home / "config.toml").read_text())["model_providers"]["onloop"]["env_key"] == "MY_KEY"
    missing = backend(command=["codex-bin"], api_key_env="NOT_SET_ANYWHERE", codex_home=str(home))
    with pytest.raises(BackendError, match="NOT_SET_ANYWHERE"):
        missing.env(request)


def test_default_codex_home_is_per_backend_under_onloop_home(tmp_path: Path) -> None:
    b = create(spec("codex", {}, tmp_path, name="nightly"))
    from onloop.store.db import onloop_home

    assert b.home == (onloop_home() / "codex-home" / "nightly").resolve()


def test_options_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as unknown:
        create(spec("codex", {"bogus": 1}, tmp_path, name="cx"))
    assert unknown.value.key == "backends.cx.bogus"
    with pytest.raises(ConfigError) as wire:
        create(spec("codex", {"wire_api": "chat"}, tmp_path, name="cx"))
    assert wire.value.key == "backends.cx.wire_api"


def test_registered_and_never_launches_the_real_binary(harness: Harness, tmp_path: Path) -> None:
    b = create_backend(spec("codex", {"codex_home": str(tmp_path / "h")}, tmp_path))
    assert isinstance(b, CodexBackend)
    with pytest.raises(RealCallBlocked):
        b.run(harness.request())


def fake_backend(harness: Harness, scenario: Scenario, **options: object) -> CodexBackend:
    command = fake_command("codex", harness.scenario(scenario))
    return backend(command=command, codex_home=str(harness.root / "codex-home"), **options)


def test_end_to_end_the_edit_lands_and_the_result_is_right(harness: Harness) -> None:
    b = fake_backend(harness, fix_calc_scenario(commands=(("git", "status", "--short"),)))
    request = harness.request()
    result = b.run(request)
    assert result.status is AgentStatus.OK, result.error
    assert "return a + b" in (harness.repo / "calc.py").read_text()
    diff = subprocess.run(["git", "diff", "--stat"], cwd=harness.repo, capture_output=True, text=True).stdout
    assert "calc.py" in diff
    assert result.final_message == "Fixed add() in calc.py."
    assert result.usage == Usage(1200, 300, 0)
    assert result.exit_code == 0
    assert result.session_id and len(result.session_id) == 36
    # thread, 2 messages, edit (call, result), command (call, result), usage
    assert result.events == 8
    assert [e.kind for e in harness.events].count("tool_call") == 2
    assert (request.scratch_dir / "codex-last-message.txt").read_text() == "Fixed add() in calc.py."
    replayed = b.parse_log(request.log_path)
    assert (replayed.usage, replayed.final_message, replayed.events) == (result.usage, result.final_message, 8)


def test_end_to_end_rate_limit(harness: Harness) -> None:
    scenario = fix_calc_scenario(rate_limit_attempts=1, rate_limit_reset_in=30)
    b = fake_backend(harness, scenario)
    limited = b.run(harness.request(attempt=1))
    assert limited.status is AgentStatus.RATE_LIMITED
    assert limited.rate_limit_reset == NOW + timedelta(seconds=30)
    assert "return a - b" in (harness.repo / "calc.py").read_text()  # nothing was done
    retried = b.run(harness.request(attempt=2))
    assert retried.status is AgentStatus.OK


def test_end_to_end_failures(harness: Harness) -> None:
    assert fake_backend(harness, fix_calc_scenario(is_error=True, exit_code=1)).run(
        harness.request()).status is AgentStatus.FAILED
    killed = fake_backend(harness, fix_calc_scenario(crash="kill")).run(harness.request(iteration=1, attempt=2))
    assert killed.status is AgentStatus.CRASHED and killed.exit_code == -9
    cut = fake_backend(harness, fix_calc_scenario(crash="before_result")).run(harness.request(attempt=3))
    assert cut.status is AgentStatus.FAILED and cut.exit_code == 1


def test_a_codex_that_never_exits_is_killed_by_the_timeout(harness: Harness) -> None:
    b = fake_backend(harness, fix_calc_scenario(crash="hang"))
    request = harness.request(timeout=2.0)
    started = time.monotonic()
    result = b.run(request)
    elapsed = time.monotonic() - started
    assert result.status is AgentStatus.TIMEOUT
    assert elapsed < 2.0 + 2.0 + 3.0  # timeout + kill grace + slack
    assert "reconnecting" in (result.error or "").lower()
    child = int((request.scratch_dir / CHILD_PID_FILE).read_text())
    assert wait_dead(child), "the fake's child survived the timeout"


def test_codex_home_is_writable_inside_the_sandbox(harness: Harness) -> None:
    seen: list[ProcessSpec] = []

    class Recording(NoSandbox):
        def wrap(self, spec: ProcessSpec) -> list[str]:
            seen.append(spec)
            return super().wrap(spec)

    b = fake_backend(harness, fix_calc_scenario())
    from dataclasses import replace

    b.run(replace(harness.request(), sandbox=Recording()))
    assert b.home in seen[0].writable and harness.request().scratch_dir in seen[0].writable

