"""Refused credentials: read from real captures of Claude Code and Codex against a fake server answering
401, stopped early when the CLI keeps retrying them, and explained with the variable to fix."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from backendhelpers import Harness, StubClock, fake_command, finish_lines, fixture_path, spec

from onloop.backends._cli import agent_env, run_cli
from onloop.backends.aider import AiderBackend, AiderOptions
from onloop.backends.auth import is_auth_failure
from onloop.backends.base import AgentStatus
from onloop.backends.builtin import create as create_builtin
from onloop.backends.claude_code import ClaudeCodeBackend, ClaudeOptions, ClaudeStreamParser
from onloop.backends.codex import CodexBackend, CodexOptions
from onloop.backends.command import CommandBackend, CommandOptions
from onloop.backends.opencode import OpencodeBackend, OpencodeOptions
from onloop.testing.fake_model_server import FakeModelServer, Turn
from onloop.testing.scenario import Scenario, Step

AUTH_STEP = Scenario((Step(auth_failure=True),))


def claude(**options: object) -> ClaudeCodeBackend:
    return ClaudeCodeBackend("claude", ClaudeOptions.model_validate(options))


def codex(**options: object) -> CodexBackend:
    return CodexBackend("cx", CodexOptions.model_validate(options), clock=StubClock())


@pytest.mark.parametrize("capture", ["claude-auth-401.jsonl", "claude-auth-401-default-retries.jsonl",
                                     "claude-not-logged-in.jsonl", "claude-oauth-expired.jsonl"])
def test_claude_code_captures_are_auth_failed_and_name_the_variable(capture: str) -> None:
    result = claude(api_key_env="MY_ANTHROPIC_KEY", max_retries=10).parse_log(fixture_path(capture))
    assert result.status is AgentStatus.AUTH_FAILED and result.fatal and result.failed
    error = result.error or ""
    assert "claude_code backend 'claude'" in error
    assert "MY_ANTHROPIC_KEY" in error and "ANTHROPIC_API_KEY" in error and "backends.claude.api_key_env" in error


def test_the_cli_own_words_are_kept_in_the_message() -> None:
    expired = claude().parse_log(fixture_path("claude-oauth-expired.jsonl"))
    assert "OAuth token has expired" in (expired.error or "")
    login = claude().parse_log(fixture_path("claude-not-logged-in.jsonl"))
    assert "Please run /login" in (login.error or "") and "set ANTHROPIC_API_KEY" in (login.error or "")


def test_claude_code_retrying_more_than_it_was_told_is_stopped() -> None:
    # The default-retries capture shows ten api_retry events for a 401: with the limit onloop passes (2),
    # the parser asks to stop the CLI at the third.
    parser = ClaudeStreamParser(auth_retry_limit=2)
    reasons = []
    for line in fixture_path("claude-auth-401-default-retries.jsonl").read_text().splitlines():
        parser.feed(line)
        reasons.append(parser.abort_reason())
    first = next(i for i, reason in enumerate(reasons) if reason)
    assert json.loads(fixture_path("claude-auth-401-default-retries.jsonl").read_text().splitlines()[first])[
        "attempt"] == 3
    with_limit = ClaudeStreamParser(auth_retry_limit=2)
    for line in fixture_path("claude-auth-401.jsonl").read_text().splitlines():  # captured with the limit set
        with_limit.feed(line)
        assert with_limit.abort_reason() is None


def test_an_agent_talking_about_401_is_not_an_auth_failure() -> None:
    lines = fixture_path("claude-success.jsonl").read_text().splitlines()
    result = json.loads(lines[-1])
    result["result"] = "Fixed the 401 Unauthorized handler; invalid API keys are now rejected."
    parsed = finish_lines(ClaudeStreamParser(), [*lines[:-1], json.dumps(result)], exit_code=1)
    assert parsed.status is AgentStatus.FAILED  # the exit code failed the run, not a refused key


def test_codex_capture_is_auth_failed_and_stopped_at_the_second_refusal() -> None:
    lines = fixture_path("codex-auth-401.jsonl").read_text().splitlines()
    parser = codex().parser()
    stops = []
    for line in lines:
        parser.feed(line)
        stops.append(parser.abort_reason() is not None)
    assert stops.index(True) == 4  # thread, warning, turn.started, Reconnecting 1/5, Reconnecting 2/5
    hosted = codex(api_key_env="MY_OPENAI_KEY").parse_log(fixture_path("codex-auth-401.jsonl"))
    assert hosted.status is AgentStatus.AUTH_FAILED
    error = hosted.error or ""
    assert "codex backend 'cx'" in error and "MY_OPENAI_KEY" in error and "CODEX_API_KEY" in error
    assert "codex login" in error and "401 Unauthorized" in error
    local = codex(base_url="http://127.0.0.1:9/v1").parse_log(fixture_path("codex-auth-401.jsonl"))
    assert "set OPENAI_API_KEY and name it in backends.cx.api_key_env" in (local.error or "")


def test_codex_reconnects_without_401_are_not_auth() -> None:
    result = codex().parse_log(fixture_path("codex-dead-endpoint.jsonl"))
    assert result.status is not AgentStatus.AUTH_FAILED
    assert not is_auth_failure("Reconnecting... 1/5 (stream disconnected before completion)")
    assert not is_auth_failure("You've hit your usage limit. Try again in 5 seconds.")


def test_claude_code_is_stopped_early_when_it_ignores_the_retry_limit(harness: Harness) -> None:
    """The scripted agent retries a refused key like the real CLI with CLAUDE_CODE_MAX_RETRIES unset
    (ten retries, backoff to 32 s: minutes); onloop kills it after the third."""
    scenario = harness.scenario(AUTH_STEP)
    argv = [sys.executable, "-m", "onloop.testing.scripted_agent", "--scenario", str(scenario)]
    request = harness.request(timeout=120)
    started = time.monotonic()
    result = run_cli(request, argv, agent_env(request), ClaudeStreamParser(auth_retry_limit=2))
    assert result.status is AgentStatus.AUTH_FAILED
    assert time.monotonic() - started < 3.5 + 2 + 3  # 0.5 + 1 + 2 s of backoff, the kill's grace, slack
    assert "retried refused credentials 3 times" in (result.error or "")


def test_codex_is_stopped_at_the_second_refusal(harness: Harness, tmp_path: Path) -> None:
    backend = CodexBackend("cx", CodexOptions(command=fake_command("codex", harness.scenario(AUTH_STEP)),
                                              codex_home=str(tmp_path / "home"), api_key_env="PATH"))
    started = time.monotonic()
    result = backend.run(harness.request(timeout=120))
    assert result.status is AgentStatus.AUTH_FAILED, result.error
    assert time.monotonic() - started < 0.6 + 2 + 3  # two backoffs, the kill's grace, slack
    assert "the variable backends.cx.api_key_env names" in (result.error or "")


def test_claude_code_passes_its_retry_limit(harness: Harness) -> None:
    request = harness.request()
    from onloop.policy.agent_cli import prepare_claude
    from onloop.policy.model import Policy

    setup = prepare_claude(Policy(), request.worktree, request.scratch_dir)
    assert claude().env(request, setup)["CLAUDE_CODE_MAX_RETRIES"] == "2"
    assert claude(max_retries=0).env(request, setup)["CLAUDE_CODE_MAX_RETRIES"] == "0"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_builtin_agent_refused_key_is_auth_failed(harness: Harness, provider: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_MODEL_KEY", "sk-wrong")
    with FakeModelServer([Turn.failure(401, "Incorrect API key provided")]) as server:
        base = server.openai_base_url if provider == "openai" else server.url
        backend = create_builtin(spec("builtin", {"provider": provider, "model": "fake-model", "base_url": base,
                                                  "api_key_env": "MY_MODEL_KEY"}, harness.root, name="agent"))
        result = backend.run(harness.request())
    assert result.status is AgentStatus.AUTH_FAILED
    assert "builtin backend 'agent'" in (result.error or "") and "MY_MODEL_KEY" in (result.error or "")
    assert "401" in (result.error or "")


def test_builtin_agent_other_errors_stay_failed(harness: Harness) -> None:
    with FakeModelServer([Turn.failure(500, "boom")]) as server:
        backend = create_builtin(spec("builtin", {"provider": "openai", "model": "fake-model",
                                                  "base_url": server.openai_base_url}, harness.root))
        assert backend.run(harness.request()).status is AgentStatus.FAILED


@pytest.mark.parametrize("kind", ["opencode", "aider", "command"])
def test_other_fake_clis_report_a_refused_key(harness: Harness, tmp_path: Path, kind: str) -> None:
    scenario = harness.scenario(AUTH_STEP)
    backend: OpencodeBackend | AiderBackend | CommandBackend
    if kind == "opencode":
        backend = OpencodeBackend("oc", OpencodeOptions(command=fake_command("opencode", scenario),
                                                        config_home=str(tmp_path / "oc")))
    elif kind == "aider":
        backend = AiderBackend("ai", AiderOptions(command=fake_command("aider", scenario)))
    else:
        backend = CommandBackend("cmd", CommandOptions(command=fake_command("command", scenario, "--output", "jsonl"),
                                                       output="jsonl"))
    result = backend.run(harness.request())
    assert result.status is AgentStatus.AUTH_FAILED, result.error
    assert f"{kind} backend" in (result.error or "")
