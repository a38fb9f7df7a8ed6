"""The PreToolUse guard hook onloop installs into Claude Code: the policy, enforced per tool call.

Claude Code runs the hook before every tool call with a JSON payload on stdin (`tool_name`,
`tool_input`, `cwd`, ...). Exit code 2 blocks the call and sends stderr back to the model as the reason;
exit 0 lets it through (a deny from a hook wins even in bypassPermissions mode). The guard denies:

- `Bash` commands that are not exactly one of the policy's named actions (argv compared after shell
  splitting, so spacing and quoting differences do not matter, but `pytest -q; curl x` does);
- `Edit`, `Write`, `MultiEdit`, `NotebookEdit` on a path outside the worktree (after resolving
  symlinks) or matching `policy.protected`;
- `WebFetch` and `WebSearch` unless the policy's network is `full`.

The script is generated as a standalone file with the policy embedded and only the standard library
imported, because it runs inside the sandbox where onloop itself may not be importable (pipx installs
live under a hidden home). It is one layer among several: the sandbox and the diff audit still apply.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from onloop.policy.model import Policy

GUARD_FILE = "onloop_guard.py"

_TEMPLATE = r'''#!/usr/bin/env python3
"""onloop's PreToolUse guard for Claude Code (generated; do not edit). Exit 2 blocks the tool call."""
import fnmatch, json, os, shlex, sys

CONFIG = json.loads(__CONFIG__)
EDIT_TOOLS = {"Edit", "Write", "MultiEdit", "NotebookEdit"}
WEB_TOOLS = {"WebFetch", "WebSearch"}


def glob_match(pattern, path):
    pat = [p for p in pattern.strip("/").split("/") if p not in ("", ".")]
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return _match(pat, parts)


def _match(pat, parts):
    if not pat:
        return not parts
    if pat[0] == "**":
        return any(_match(pat[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pat[0]) and _match(pat[1:], parts[1:])


def deny(reason):
    sys.stderr.write("onloop policy: " + reason + "\n")
    sys.exit(2)


def check_bash(tool_input):
    command = str(tool_input.get("command", "")).strip()
    try:
        argv = shlex.split(command)
    except ValueError:
        argv = None
    if argv is not None and argv in CONFIG["actions"]:
        return
    allowed = "; ".join(shlex.join(a) for a in CONFIG["actions"]) or "none"
    deny("this command is not one of the named actions. Allowed commands, exactly: " + allowed)


def check_edit(tool_input, cwd):
    raw = tool_input.get("file_path") or tool_input.get("notebook_path") or ""
    if not raw:
        deny("no file path given")
    worktree = os.path.realpath(CONFIG["worktree"])
    path = os.path.realpath(os.path.join(cwd or worktree, raw))
    if path != worktree and not path.startswith(worktree + os.sep):
        deny(raw + " is outside the worktree " + CONFIG["worktree"] + "; only files inside it may change")
    rel = os.path.relpath(path, worktree)
    for pattern in CONFIG["protected"]:
        if glob_match(pattern, rel):
            deny(rel + " is protected (" + pattern + "); it must not be changed")


def main():
    try:
        payload = json.load(sys.stdin)
    except ValueError:
        deny("unreadable hook payload")
    tool = payload.get("tool_name", "")
    tool_input = payload.get("tool_input") or {}
    if tool == "Bash":
        check_bash(tool_input)
    elif tool in EDIT_TOOLS:
        check_edit(tool_input, payload.get("cwd"))
    elif tool in WEB_TOOLS and not CONFIG["web"]:
        deny(tool + " is not available: the policy allows no network for the agent")
    sys.exit(0)


main()
'''


def guard_config(policy: Policy, worktree: Path) -> dict[str, object]:
    """The data the guard script embeds."""
    return {
        "worktree": str(worktree.resolve()),
        "actions": [list(action.argv) for action in policy.actions.values()],
        "protected": list(policy.protected),
        "web": policy.network == "full",
    }


def guard_script(policy: Policy, worktree: Path) -> str:
    config = json.dumps(json.dumps(guard_config(policy, worktree)))
    return _TEMPLATE.replace("__CONFIG__", config)


def write_guard(policy: Policy, worktree: Path, directory: Path) -> Path:
    """Write the guard script into `directory` (a run-owned dir outside the worktree); return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / GUARD_FILE
    path.write_text(guard_script(policy, worktree), encoding="utf-8")
    path.chmod(0o555)
    return path


def hook_command(script: Path, python: str | None = None) -> str:
    """The `command` of the hook entry. The system python3 is used: the guard needs only the stdlib."""
    interpreter = python or ("/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable)
    return shlex.join([interpreter, str(script)])
