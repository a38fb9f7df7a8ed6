"""What each external agent CLI gets so that its own permissions match the policy.

onloop's sandbox is the outer wall; these are the inner ones: each CLI's own permission system set to
the same policy, and every door a repository could open into the CLI's configuration shut. The CLI
adapters (`onloop.backends.*`) call these functions and add their model/provider flags.

- Claude Code: its sandbox on with `failIfUnavailable` (without it, a missing socat silently runs
  commands unsandboxed), unsandboxed commands off, a PreToolUse guard hook (`claude_guard`),
  `--setting-sources user` so the repository's `.claude/settings.json` hooks never run, a per-run
  `CLAUDE_CONFIG_DIR`, telemetry and autoupdate off.
- Codex: a `CODEX_HOME` owned by onloop and outside /tmp (Codex refuses to create its sandbox helper
  under a temp dir, and then every command fails), `approval_policy = "never"`, `workspace-write`
  without network, /tmp excluded, a core-only shell environment; never `--trust`, so a repository's
  `.codex/config.toml` stays ignored.
- aider: it has no sandbox, so it must not run shell commands at all (`--no-suggest-shell-commands`),
  must not commit (onloop commits after the audit) and must not phone home.
- opencode: permissions in an onloop-owned `XDG_CONFIG_HOME`, bash limited to the named actions.

`check_args` refuses argv carrying a flag that switches any of this off; adapters call it last.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from onloop.errors import ConfigError
from onloop.policy.claude_guard import hook_command, write_guard
from onloop.policy.model import Policy

CLAUDE_TOOLS = ("Read", "Edit", "Write", "Bash", "Glob", "Grep")
FORBIDDEN_FLAGS = {
    "claude": ("--dangerously-skip-permissions", "--allow-dangerously-skip-permissions"),
    "codex": ("--dangerously-bypass-approvals-and-sandbox", "--trust", "--dangerously-bypass-hook-trust",
              "--full-auto", "danger-full-access"),
    "aider": ("--suggest-shell-commands", "--auto-commits"),
    "opencode": (),
}


def action_commands(policy: Policy) -> list[str]:
    """Each named action as the exact shell command an agent must type."""
    return [shlex.join(action.argv) for action in policy.actions.values()]


# -- Claude Code ----------------------------------------------------------------------------------


def inner_sandbox_on(setting: str, outer: str, agent: str) -> bool:
    """Whether the CLI's own sandbox runs, given onloop's (`outer`: bwrap or none).

    A CLI's own sandbox is bubblewrap too, and it cannot nest inside onloop's: onloop's drops every
    capability, and the inner bwrap then fails ("setting up uid map: Operation not permitted", seen with
    Codex 0.169). So by default ("auto") the inner sandbox runs exactly when onloop's does not. "off"
    without onloop's sandbox would leave no wall at all, and is refused.
    """
    if setting == "on":
        return True
    if setting == "off":
        if outer == "none":
            raise ConfigError("inner_sandbox = \"off\" needs onloop's sandbox (policy.sandbox = \"bwrap\")",
                              key=f"backends.{agent}.inner_sandbox")
        return False
    return outer == "none"


def claude_settings(policy: Policy, hook_cmd: str, *, sandbox: bool = True) -> dict[str, object]:
    """The `--settings` JSON: Claude's sandbox (required when on), permissions and the guard hook."""
    allow = ["Read", "Edit", "Write", "Glob", "Grep", *(f"Bash({cmd})" for cmd in action_commands(policy))]
    deny = [] if policy.network == "full" else ["WebFetch", "WebSearch"]
    return {
        "sandbox": {
            "enabled": sandbox,
            "failIfUnavailable": True,
            "allowUnsandboxedCommands": False,
            "autoAllowBashIfSandboxed": False,
        },
        "permissions": {"allow": allow, "deny": deny, "defaultMode": "acceptEdits"},
        "hooks": {"PreToolUse": [{"matcher": "*", "hooks": [{"type": "command", "command": hook_cmd}]}]},
        "enableAllProjectMcpServers": False,
        "includeCoAuthoredBy": False,
    }


def claude_args(policy: Policy, settings_file: Path | None = None) -> list[str]:
    """Flags that pin Claude Code to onloop's settings (add -p, output format and model separately)."""
    args = ["--setting-sources", "user", "--permission-mode", "acceptEdits", "--tools", ",".join(CLAUDE_TOOLS),
            "--strict-mcp-config", "--no-session-persistence"]
    if settings_file is not None:
        args += ["--settings", str(settings_file)]
    if policy.network != "full":
        args += ["--disallowedTools", "WebFetch,WebSearch"]
    return args


def claude_env(config_dir: Path) -> dict[str, str]:
    return {
        "CLAUDE_CONFIG_DIR": str(config_dir),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }


@dataclass(frozen=True, slots=True)
class ClaudeSetup:
    args: tuple[str, ...]
    env: dict[str, str]
    settings_file: Path
    guard_file: Path
    config_dir: Path


def prepare_claude(policy: Policy, worktree: Path, run_dir: Path, *, python: str | None = None,
                   sandbox: bool = True) -> ClaudeSetup:
    """Write the guard and the settings into `run_dir` (outside the worktree) and return what to pass."""
    guard = write_guard(policy, worktree, run_dir)
    settings = claude_settings(policy, hook_command(guard, python), sandbox=sandbox)
    settings_file = run_dir / "claude-settings.json"
    settings_file.write_text(json.dumps(settings, indent=2), encoding="utf-8")
    config_dir = run_dir / "claude-config"
    config_dir.mkdir(parents=True, exist_ok=True)
    return ClaudeSetup(
        args=tuple(claude_args(policy, settings_file)), env=claude_env(config_dir),
        settings_file=settings_file, guard_file=guard, config_dir=config_dir,
    )


# -- Codex ----------------------------------------------------------------------------------------


def codex_config(policy: Policy, extra_toml: str = "") -> str:
    """`config.toml` for CODEX_HOME; `extra_toml` carries the adapter's provider tables."""
    network = "true" if policy.network == "full" else "false"
    return (
        "# Written by onloop for one run; edits are overwritten.\n"
        'approval_policy = "never"\n'
        'sandbox_mode = "workspace-write"\n'
        "\n[sandbox_workspace_write]\n"
        f"network_access = {network}\n"
        "exclude_slash_tmp = true\n"
        "exclude_tmpdir_env_var = true\n"
        "\n[shell_environment_policy]\n"
        'inherit = "core"\n'
        + (f"\n{extra_toml.strip()}\n" if extra_toml.strip() else "")
    )


def write_codex_home(policy: Policy, home: Path, extra_toml: str = "") -> Path:
    """Create CODEX_HOME with its config. Refuses a home under /tmp (Codex cannot sandbox from there)."""
    resolved = home.resolve()
    if resolved == Path("/tmp") or resolved.is_relative_to("/tmp"):
        raise ConfigError(
            f"CODEX_HOME {home} is under /tmp, where Codex refuses to create its sandbox helper; "
            "use a directory under ONLOOP_HOME outside /tmp (e.g. /var/lib/onloop/codex-home)",
            key="backends.codex",
        )
    resolved.mkdir(parents=True, exist_ok=True)
    (resolved / "config.toml").write_text(codex_config(policy, extra_toml), encoding="utf-8")
    return resolved


def codex_args(policy: Policy) -> list[str]:
    network = "true" if policy.network == "full" else "false"
    return [
        "-s", "workspace-write",
        "-c", 'approval_policy="never"',
        "-c", f"sandbox_workspace_write.network_access={network}",
        "-c", "sandbox_workspace_write.exclude_slash_tmp=true",
        "-c", "sandbox_workspace_write.exclude_tmpdir_env_var=true",
        "-c", 'shell_environment_policy.inherit="core"',
    ]


def codex_env(home: Path) -> dict[str, str]:
    return {"CODEX_HOME": str(home)}


# -- aider and opencode ---------------------------------------------------------------------------


def aider_args(policy: Policy) -> list[str]:
    del policy  # aider has no permission model beyond "no shell"; the outer sandbox does the rest
    return [
        "--yes-always", "--no-suggest-shell-commands", "--no-auto-commits", "--no-dirty-commits",
        "--no-gitignore", "--no-check-update", "--no-analytics", "--no-show-model-warnings",
        "--no-detect-urls", "--no-pretty", "--no-stream",
    ]


def aider_env() -> dict[str, str]:
    return {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "AIDER_ANALYTICS": "false", "AIDER_CHECK_UPDATE": "false"}


def opencode_permissions(policy: Policy) -> dict[str, object]:
    """The `permission` block of opencode.json: bash limited to the named actions."""
    bash: dict[str, str] = {cmd: "allow" for cmd in action_commands(policy)}
    bash["*"] = "deny"
    return {"edit": "allow", "bash": bash, "webfetch": "allow" if policy.network == "full" else "deny"}


# -- the last check -------------------------------------------------------------------------------


def check_args(agent: str, argv: Sequence[str]) -> None:
    """Refuse an agent argv that carries a flag switching off the policy's inner layers."""
    for flag in FORBIDDEN_FLAGS.get(agent, ()):
        for arg in argv:
            if arg == flag or arg.startswith(flag + "=") or (flag == "danger-full-access" and flag in arg):
                raise ConfigError(
                    f"{agent} argument {arg!r} switches off onloop's guardrails and is never passed",
                    key=f"backends.{agent}",
                )
