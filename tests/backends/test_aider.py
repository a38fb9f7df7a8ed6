"""The aider adapter: the real text transcript, limits and errors, and the fake aider end to end."""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from pathlib import Path

import pytest
from backendhelpers import (
    Harness,
    StubClock,
    fake_command,
    finish_lines,
    fix_calc_scenario,
    fixture_path,
    spec,
    wait_dead,
)

from onloop.backends.aider import AiderBackend, AiderOptions, create, parse_count
from onloop.backends.base import AgentResult, AgentStatus
from onloop.errors import ConfigError
from onloop.safety import RealCallBlocked
from onloop.testing.fake_agents import CHILD_PID_FILE, aider_tokens
from onloop.testing.scenario import Scenario
from onloop.usage import CostSource, Usage

RATE_LIMIT = [
    "litellm.RateLimitError: RateLimitError: OpenAIException - Error code: 429 - {'error': {'code': 'rate_limit'}}",
    "The API provider has rate limited you. Try again later or check your quotas.",
    "Retrying in 0.2 seconds...",
]


def backend(**options: object) -> AiderBackend:
    return AiderBackend("aider", AiderOptions.model_validate(options), clock=StubClock())


def parse(lines: list[str], exit_code: int | None = 0, **options: object) -> AgentResult:
    return finish_lines(backend(**options).parser(), lines, exit_code)


def test_parses_the_real_transcript() -> None:
    result = backend().parse_log(fixture_path("aider-success.txt"))
    assert result.status is AgentStatus.OK
    assert result.final_message == "`add()` subtracts instead of adding. Here is the fixed file:"
    assert result.usage == Usage(input_tokens=1300, output_tokens=40)  # aider rounds: "1.3k sent"
    assert result.events == 4  # the answer, its usage, "Applied edit to calc.py", the commit
    assert result.session_id is None
    assert result.cost.source is CostSource.UNKNOWN  # this run printed no Cost: line


def test_event_kinds() -> None:
    parser = backend().parser()
    events = [e for line in fixture_path("aider-success.txt").read_text().splitlines() for e in parser.feed(line)]
    assert [e.kind for e in events] == ["message", "usage", "tool_result", "system"]
    assert events[2].data == {"path": "calc.py"}
    assert events[3].data["sha"] == "3c06d70"


@pytest.mark.parametrize(("text", "count"), [("40", 40), ("1.3k", 1300), ("12k", 12000), ("1.1M", 1_100_000)])
def test_token_counts(text: str, count: int) -> None:
    assert parse_count(text) == count
    assert parse_count(aider_tokens(count)) == count


def test_cost_and_cache_fields_are_read() -> None:
    line = "Tokens: 2.1k sent, 1.2k cache write, 1.5k cache hit, 171 received. Cost: $0.0069 message, $0.01 session."
    result = parse(["Sure, done.", line, "Later.", line.replace("$0.01 session", "$0.02 session")], model="gpt-4o")
    assert result.usage == Usage(4200, 342, 3000)
    assert result.cost.amount == Decimal("0.02") and result.cost.source is CostSource.REPORTED
    assert result.final_message == "Later."
    custom = parse(["ok", line], model="openai/fake", base_url="http://127.0.0.1:9/v1")
    assert custom.cost.source is CostSource.UNKNOWN


def test_a_rate_limit_with_no_answer_after_it_is_rate_limited() -> None:
    result = parse(["Aider v0.86.2", *RATE_LIMIT, *RATE_LIMIT], exit_code=0)
    assert result.status is AgentStatus.RATE_LIMITED
    assert result.rate_limit_reset is None  # "Try again later" names no time
    assert "RateLimitError" in (result.error or "")


def test_a_rate_limit_aider_retried_past_is_not_one() -> None:
    result = parse([*RATE_LIMIT, "Paris.", "Tokens: 12 sent, 4 received."])
    assert result.status is AgentStatus.OK
    assert result.final_message == "Paris."


def test_other_errors_and_exit_codes() -> None:
    error = parse(["litellm.AuthenticationError: AuthenticationError: OpenAIException - bad key"])
    assert error.status is AgentStatus.FAILED and "AuthenticationError" in (error.error or "")
    assert parse(["ok", "Tokens: 1 sent, 1 received."], exit_code=1).status is AgentStatus.FAILED
    assert parse(["ok"], exit_code=-9).status is AgentStatus.CRASHED
    assert parse(["half an answer"], exit_code=None).status is AgentStatus.CRASHED


def test_truncated_log_keeps_the_usage_seen(tmp_path: Path) -> None:
    text = fixture_path("aider-success.txt").read_text()
    log = tmp_path / "cut.txt"
    log.write_text(text + "\nSecond answer\nTokens: 2k sent, 5")  # cut inside the second usage line
    result = backend().parse_log(log)
    assert result.usage == Usage(1300, 40)
    assert result.status is AgentStatus.OK


def test_argv_env_and_degraded_capabilities(harness: Harness, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    b = backend(command=["aider-bin"], model="openai/fake", base_url="http://127.0.0.1:9/v1", test_cmd="pytest -q",
                auto_test=True, files=["calc.py"])
    request = harness.request()
    argv = b.argv(request)
    assert argv[argv.index("--message-file") + 1] == str(request.scratch_dir / "prompt.md")
    for flag in ("--yes-always", "--no-suggest-shell-commands", "--no-auto-commits", "--no-gitignore",
                 "--no-check-update", "--no-analytics", "--no-show-model-warnings", "--no-pretty", "--no-stream",
                 "--no-detect-urls", "--auto-test"):
        assert flag in argv
    assert argv[argv.index("--map-tokens") + 1] == "0"
    assert argv[argv.index("--openai-api-base") + 1] == "http://127.0.0.1:9/v1"
    assert argv[argv.index("--test-cmd") + 1] == "pytest -q"
    assert argv[-1] == "calc.py"
    assert all(str(harness.repo) not in arg for arg in argv)  # no history files in the worktree
    env = b.env(request)
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert env["OPENAI_API_KEY"] == "onloop-local"
    with caplog.at_level(logging.WARNING):
        created = create(spec("aider", {}, tmp_path, name="ai"))
    assert created.capabilities.structured_events is False
    assert "backend ai cannot report: structured_events" in caplog.text


def test_options_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        create(spec("aider", {"auto_test": "sometimes"}, tmp_path, name="ai"))
    assert err.value.key == "backends.ai.auto_test"


def test_never_launches_the_real_binary(harness: Harness, tmp_path: Path) -> None:
    with pytest.raises(RealCallBlocked):
        create(spec("aider", {}, tmp_path)).run(harness.request())


def fake_backend(harness: Harness, scenario: Scenario, **options: object) -> AiderBackend:
    return backend(command=fake_command("aider", harness.scenario(scenario)), **options)


def test_end_to_end_the_edit_lands_and_the_result_is_right(harness: Harness) -> None:
    b = fake_backend(harness, fix_calc_scenario(claim_done=True), model="gpt-4o")
    request = harness.request(prompt="Fix add().")
    result = b.run(request)
    assert result.status is AgentStatus.OK, result.error
    assert "return a + b" in (harness.repo / "calc.py").read_text()
    assert (request.scratch_dir / "prompt.md").read_text() == "Fix add()."
    assert result.final_message == "Fixed add() in calc.py.\n\n<onloop:done/>"
    assert result.usage == Usage(1200, 300)
    assert result.cost.amount == Decimal("0.0125") and result.cost.source is CostSource.REPORTED
    assert result.events == 3  # answer, usage, applied edit
    assert [e.kind for e in harness.events] == ["message", "usage", "tool_result"]
    assert backend().parse_log(request.log_path).usage == Usage(1200, 300)


def test_end_to_end_rate_limit_then_retry(harness: Harness) -> None:
    b = fake_backend(harness, fix_calc_scenario(rate_limit_attempts=1))
    limited = b.run(harness.request(attempt=1))
    assert limited.status is AgentStatus.RATE_LIMITED and limited.exit_code == 0
    assert b.run(harness.request(attempt=2)).status is AgentStatus.OK


def test_end_to_end_crash_exit_and_hang(harness: Harness) -> None:
    assert fake_backend(harness, fix_calc_scenario(exit_code=2)).run(harness.request()).status is AgentStatus.FAILED
    assert fake_backend(harness, fix_calc_scenario(crash="kill")).run(
        harness.request(attempt=2)).status is AgentStatus.CRASHED
    request = harness.request(attempt=3, timeout=1.5)
    started = time.monotonic()
    hung = fake_backend(harness, fix_calc_scenario(crash="hang")).run(request)
    assert hung.status is AgentStatus.TIMEOUT
    assert time.monotonic() - started < 1.5 + 2.0 + 3.0
    assert wait_dead(int((request.scratch_dir / CHILD_PID_FILE).read_text()))


def test_protected_files_are_kept_out_of_aiders_reach(harness: Harness) -> None:
    # With --yes-always aider adds every repository file an answer names; what it ignores it never lists.
    from onloop.backends.base import BackendSpec
    from onloop.policy.model import Policy

    policy = Policy(protected=[".github/**", "**/migrations/**", "tests/**"])
    made = create(BackendSpec("aider", "aider", {"command": ["/bin/true"]}, harness.repo, policy))
    request = harness.request()

    argv = made.argv(request)

    ignore = argv[argv.index("--aiderignore") + 1]
    assert "--no-show-release-notes" in argv
    assert made.aiderignore().splitlines() == ["/.github/**", "/**/migrations/**", "/tests/**", "/onloop.toml"]
    assert Path(ignore).parent == request.scratch_dir, "the ignore file lives outside the worktree"


def test_the_subject_of_aiders_own_question_is_not_the_answer() -> None:
    lines = ["Added calc.py to the chat.", "", "Fixed it; test_calc.py covers it.", "", "Tokens: 10 sent, 5 received.",
             "", "test_calc.py", "Nothing more to change.", "", "Tokens: 12 sent, 4 received."]
    result = finish_lines(backend().parser(), lines)
    assert result.final_message == "Nothing more to change."
