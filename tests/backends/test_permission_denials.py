"""Denied actions, from real Claude Code captures: a run that "succeeds" while its writes were refused."""

from __future__ import annotations

from pathlib import Path

from backendhelpers import StubClock, fixture_path

from onloop.backends.base import AgentStatus, PermissionDenial
from onloop.backends.claude_code import ClaudeCodeBackend, ClaudeOptions
from onloop.backends.codex import CodexBackend, CodexOptions
from onloop.gates.hallucination import check_claimed_paths
from onloop.loop.feedback import denied_summary, with_denials

REPO = "/srv/capture/runs/claude-permission-denied/repo"


def claude() -> ClaudeCodeBackend:
    return ClaudeCodeBackend("claude", ClaudeOptions())


def test_permission_system_denials_are_listed_with_their_targets() -> None:
    result = claude().parse_log(fixture_path("claude-permission-denied.jsonl"))
    assert result.status is AgentStatus.OK  # the CLI says success: only the denials tell the truth
    assert result.permission_denials == (PermissionDenial("Edit", f"{REPO}/calc.py"),
                                         PermissionDenial("Write", f"{REPO}/calc.py"))
    assert result.final_message.startswith("I could not change calc.py: permission to edit it was denied.")
    assert check_claimed_paths(result.final_message, []) == []
    assert result.malformed_events == 0


def test_guard_hook_denials_are_listed_too() -> None:
    """Captured through onloop's adapter: the guard hook refused an Edit of a protected path."""
    result = claude().parse_log(fixture_path("claude-guard-denied.jsonl"))
    assert result.status is AgentStatus.OK
    assert [d.tool for d in result.permission_denials] == ["Edit"]
    assert result.permission_denials[0].target.endswith("/claude-guard-denied/repo/calc.py")
    assert check_claimed_paths(result.final_message, []) == []


def test_the_feedback_names_the_denied_actions_relative_to_the_worktree() -> None:
    denials = claude().parse_log(fixture_path("claude-permission-denied.jsonl")).permission_denials
    summary = denied_summary(denials, Path(REPO))
    assert summary.startswith("These actions were denied: Edit calc.py; Write calc.py. They did not happen")
    assert with_denials("Gate `tests`: 1 new failing check(s).", denials, Path(REPO)).startswith("Gate `tests`")
    assert with_denials("", (), Path(REPO)) == "" and with_denials("x", (), Path(REPO)) == "x"
    elsewhere = denied_summary((PermissionDenial("Bash", "curl https://example.com"),), Path(REPO))
    assert "Bash curl https://example.com" in elsewhere


def test_codex_stopped_by_onloop_on_a_refused_key() -> None:
    """Captured through onloop's adapter: real Codex killed at the second 401, before its own retries end."""
    result = CodexBackend("cx", CodexOptions(base_url="http://127.0.0.1:9/v1"), clock=StubClock()).parse_log(
        fixture_path("codex-auth-401-stopped.jsonl"))
    assert result.status is AgentStatus.AUTH_FAILED
    assert "Reconnecting... 2/5 (unexpected status 401 Unauthorized" in (result.error or "")
