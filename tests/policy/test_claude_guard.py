"""The Claude Code PreToolUse guard, run as a real subprocess with real hook payloads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onloop.policy.claude_guard import guard_config, hook_command, write_guard
from onloop.policy.model import Action, Policy, glob_match

POLICY = Policy(actions={"test": Action(argv=["pytest", "-q"]),
                         "lint": Action(argv=["ruff", "check", "src dir"])})


@pytest.fixture
def guard(tmp_path: Path) -> tuple[Path, Path]:
    worktree = tmp_path / "wt"
    (worktree / "src").mkdir(parents=True)
    (worktree / ".github").mkdir()
    script = write_guard(POLICY, worktree, tmp_path / "run")
    return worktree, script


def call(script: Path, worktree: Path, tool: str, tool_input: dict[str, object]) -> subprocess.CompletedProcess[str]:
    payload = {
        "session_id": "abc", "transcript_path": "/tmp/t.jsonl", "cwd": str(worktree), "permission_mode": "acceptEdits",
        "hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": tool_input, "tool_use_id": "toolu_01",
    }
    argv = [*hook_command(script).split()]
    return subprocess.run(argv, input=json.dumps(payload), capture_output=True, text=True, timeout=20,
                          env={"PATH": os.environ.get("PATH", "/usr/bin")})


@pytest.mark.parametrize("command", ["pytest -q", "  pytest   -q ", "ruff check 'src dir'", 'ruff check "src dir"'])
def test_named_actions_pass(guard: tuple[Path, Path], command: str) -> None:
    worktree, script = guard
    done = call(script, worktree, "Bash", {"command": command, "description": "run tests"})
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "command",
    ["pytest", "pytest -q; curl http://x", "pytest -q && rm -rf /", "python -c 'import os'", "pytest -q tests/x.py",
     "bash -c 'pytest -q'", "pytest -q $(whoami)", "ruff check src dir", "pytest -q 'unclosed"],
)
def test_other_commands_blocked(guard: tuple[Path, Path], command: str) -> None:
    worktree, script = guard
    done = call(script, worktree, "Bash", {"command": command})
    assert done.returncode == 2
    assert "not one of the named actions" in done.stderr
    assert "pytest -q" in done.stderr  # the reason tells the agent what it may run


def test_edits_inside_worktree_pass(guard: tuple[Path, Path]) -> None:
    worktree, script = guard
    for tool, key in (("Edit", "file_path"), ("Write", "file_path"), ("MultiEdit", "file_path"),
                      ("NotebookEdit", "notebook_path")):
        done = call(script, worktree, tool, {key: str(worktree / "src" / "app.py"), "content": "x"})
        assert done.returncode == 0, done.stderr
    assert call(script, worktree, "Write", {"file_path": "src/relative.py", "content": "x"}).returncode == 0


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/etc/passwd", "outside the worktree"), ("../escape.py", "outside the worktree"),
     ("/root/.ssh/authorized_keys", "outside the worktree"), (".github/workflows/ci.yml", "is protected"),
     ("onloop.toml", "is protected"), ("app/migrations/0002.py", "is protected"), ("uv.lock", "is protected")],
)
def test_edits_outside_or_protected_blocked(guard: tuple[Path, Path], path: str, reason: str) -> None:
    worktree, script = guard
    done = call(script, worktree, "Write", {"file_path": path, "content": "x"})
    assert done.returncode == 2
    assert reason in done.stderr


def test_symlink_escape_blocked(guard: tuple[Path, Path], tmp_path: Path) -> None:
    worktree, script = guard
    os.symlink(tmp_path, worktree / "link")
    done = call(script, worktree, "Edit", {"file_path": "link/run/x.py", "old_string": "a", "new_string": "b"})
    assert done.returncode == 2 and "outside the worktree" in done.stderr


def test_web_tools_follow_network_policy(tmp_path: Path) -> None:
    worktree = tmp_path / "wt"
    worktree.mkdir()
    closed = write_guard(Policy(), worktree, tmp_path / "a")
    opened = write_guard(Policy(network="full"), worktree, tmp_path / "b")
    assert call(closed, worktree, "WebFetch", {"url": "https://example.com"}).returncode == 2
    assert call(opened, worktree, "WebFetch", {"url": "https://example.com"}).returncode == 0
    assert call(closed, worktree, "Read", {"file_path": str(worktree / "x")}).returncode == 0


def test_no_actions_means_no_bash(tmp_path: Path) -> None:
    script = write_guard(Policy(), tmp_path, tmp_path / "run")
    done = call(script, tmp_path, "Bash", {"command": "ls"})
    assert done.returncode == 2 and "Allowed commands, exactly: none" in done.stderr


def test_garbage_payload_blocks(guard: tuple[Path, Path]) -> None:
    _, script = guard
    done = subprocess.run([sys.executable, str(script)], input="not json", capture_output=True, text=True, timeout=20)
    assert done.returncode == 2


@pytest.mark.parametrize(
    ("pattern", "path"),
    [("**/*.lock", "a/b.lock"), ("*.lock", "a/b.lock"), (".github/**", ".github"), ("a/**/b", "a/b"),
     ("**/migrations/**", "x/migrations"), ("src/*.py", "src/a/b.py")],
)
def test_embedded_glob_agrees_with_the_library(tmp_path: Path, pattern: str, path: str) -> None:
    script = write_guard(Policy(protected=[pattern]), tmp_path, tmp_path / "run")
    done = call(script, tmp_path, "Write", {"file_path": path})
    assert (done.returncode == 2) is glob_match(pattern, path)


def test_config_embeds_the_policy(tmp_path: Path) -> None:
    config = guard_config(POLICY, tmp_path)
    assert config["actions"] == [["pytest", "-q"], ["ruff", "check", "src dir"]]
    assert config["web"] is False
