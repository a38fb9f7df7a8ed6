"""Inner-layer settings for the external agent CLIs."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest

from onloop.errors import ConfigError
from onloop.policy.agent_cli import (
    aider_args,
    check_args,
    claude_args,
    claude_settings,
    codex_args,
    codex_config,
    opencode_permissions,
    prepare_claude,
    write_codex_home,
)
from onloop.policy.model import Action, Policy

POLICY = Policy(actions={"test": Action(argv=["pytest", "-q"])})


def test_claude_settings_require_the_sandbox_and_install_the_guard() -> None:
    settings = claude_settings(POLICY, "python3 /run/guard.py")
    sandbox = settings["sandbox"]
    assert sandbox == {"enabled": True, "failIfUnavailable": True, "allowUnsandboxedCommands": False,
                       "autoAllowBashIfSandboxed": False}
    hooks = settings["hooks"]["PreToolUse"]  # type: ignore[index]
    assert hooks[0]["hooks"][0] == {"type": "command", "command": "python3 /run/guard.py"}
    assert "Bash(pytest -q)" in settings["permissions"]["allow"]  # type: ignore[index]
    assert "WebFetch" in settings["permissions"]["deny"]  # type: ignore[index]


def test_claude_args_ignore_repository_settings(tmp_path: Path) -> None:
    args = claude_args(POLICY, tmp_path / "s.json")
    assert args[args.index("--setting-sources") + 1] == "user"
    assert args[args.index("--settings") + 1] == str(tmp_path / "s.json")
    assert "--dangerously-skip-permissions" not in args
    check_args("claude", args)


def test_prepare_claude_writes_a_working_setup(tmp_path: Path) -> None:
    worktree = tmp_path / "wt"
    worktree.mkdir()
    setup = prepare_claude(POLICY, worktree, tmp_path / "run")
    settings = json.loads(setup.settings_file.read_text())
    command = settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
    payload = json.dumps({"tool_name": "Bash", "tool_input": {"command": "curl evil"}, "cwd": str(worktree)})
    done = subprocess.run(command, shell=True, input=payload, capture_output=True, text=True, timeout=20)
    assert done.returncode == 2
    assert setup.env["CLAUDE_CONFIG_DIR"] == str(setup.config_dir) and setup.config_dir.is_dir()
    assert setup.env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert not setup.guard_file.is_relative_to(worktree)


def test_codex_config_and_args() -> None:
    config = tomllib.loads(codex_config(POLICY, extra_toml='[model_providers.fake]\nbase_url = "http://x"'))
    assert config["approval_policy"] == "never"
    assert config["sandbox_mode"] == "workspace-write"
    assert config["sandbox_workspace_write"] == {
        "network_access": False, "exclude_slash_tmp": True, "exclude_tmpdir_env_var": True}
    assert config["shell_environment_policy"] == {"inherit": "core"}
    assert config["model_providers"]["fake"]["base_url"] == "http://x"
    args = codex_args(POLICY)
    assert args[:2] == ["-s", "workspace-write"] and "--trust" not in args
    check_args("codex", args)


def test_codex_home_must_not_be_under_tmp(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="outside /tmp"):
        write_codex_home(POLICY, tmp_path / "codex-home")


def test_codex_home_written(tmp_path: Path) -> None:
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="onloop-codex-", dir="/var/tmp"))
    try:
        written = write_codex_home(POLICY, home / "codex")
        assert tomllib.loads((written / "config.toml").read_text())["approval_policy"] == "never"
    finally:
        shutil.rmtree(home)


def test_aider_never_runs_shell_or_commits() -> None:
    args = aider_args(POLICY)
    assert "--no-suggest-shell-commands" in args and "--no-auto-commits" in args
    check_args("aider", args)


def test_opencode_bash_limited_to_actions() -> None:
    perms = opencode_permissions(POLICY)
    assert perms["bash"] == {"pytest -q": "allow", "*": "deny"}
    assert perms["webfetch"] == "deny"


@pytest.mark.parametrize(
    ("agent", "argv"),
    [("claude", ["-p", "--dangerously-skip-permissions"]), ("codex", ["exec", "--trust"]),
     ("codex", ["exec", "--dangerously-bypass-approvals-and-sandbox"]), ("codex", ["-s", "danger-full-access"]),
     ("codex", ["-c", 'sandbox_mode="danger-full-access"']), ("aider", ["--suggest-shell-commands"])],
)
def test_check_args_refuses_guardrail_switches(agent: str, argv: list[str]) -> None:
    with pytest.raises(ConfigError, match="switches off"):
        check_args(agent, argv)
