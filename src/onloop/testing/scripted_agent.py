"""The scripted agent executable: a stand-in for `claude -p --output-format stream-json --verbose`.

It reads the prompt on stdin like Claude Code, does what its scenario says for this iteration
(`ONLOOP_ITERATION`, `ONLOOP_ATTEMPT` come from onloop) in the current directory, and writes the same
stream-json event lines as the real CLI (system init, assistant text and tool_use, user tool_result,
result with usage and cost). So the loop, the Claude Code parser and every guardrail are exercised for
real, with no model behind it.

    onloop-scripted-agent --scenario scenario.toml < prompt.txt

It ignores the arguments it does not know, so it can also be the `command` of a `claude_code` backend
(which appends Claude Code's own flags). A step with `auth_failure` behaves as Claude Code 2.1.197 does
against a provider refusing the key (`tests/data/agent-cli/claude-auth-401*.jsonl`): an ``api_retry``
event per retry, with its backoff (0.5 s doubling up to 32 s), as many as ``CLAUDE_CODE_MAX_RETRIES``
says (10 when unset: minutes), then the synthetic "Invalid API key" message and an error result.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from onloop.testing.scenario import Edit, Step, load_scenario

DEFAULT_MARKER = "<onloop:done/>"


class Emitter:
    def __init__(self, session_id: str, model: str) -> None:
        self.session_id = session_id
        self.model = model
        self.turn = 0

    def emit(self, obj: dict[str, Any]) -> None:
        obj.setdefault("session_id", self.session_id)
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def assistant(self, content: list[dict[str, Any]], usage: dict[str, int]) -> None:
        self.turn += 1
        message = {
            "id": f"msg_scripted_{self.turn}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": None,
            "usage": {"input_tokens": usage.get("input_tokens", 0), "output_tokens": usage.get("output_tokens", 0),
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }
        self.emit({"type": "assistant", "message": message, "parent_tool_use_id": None})

    def tool_result(self, tool_id: str, text: str, is_error: bool = False) -> None:
        block = {"tool_use_id": tool_id, "type": "tool_result", "content": text, "is_error": is_error}
        self.emit({"type": "user", "message": {"role": "user", "content": [block]}, "parent_tool_use_id": None})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onloop-scripted-agent")
    parser.add_argument("--scenario", required=True, type=Path)
    parser.add_argument("--done-marker", default=DEFAULT_MARKER)
    parser.add_argument("--model", default="scripted-model")
    args, _claude_flags = parser.parse_known_args(argv)
    sys.stdin.read()  # the prompt: read it all, like the real CLI, so the writer never blocks
    iteration = int(os.environ.get("ONLOOP_ITERATION", "1"))
    attempt = int(os.environ.get("ONLOOP_ATTEMPT", "1"))
    step = load_scenario(args.scenario).step(iteration)
    out = Emitter(str(uuid.uuid4()), args.model)
    out.emit({"type": "system", "subtype": "init", "cwd": os.getcwd(), "model": args.model,
              "tools": ["Read", "Edit", "Write", "Bash"], "permissionMode": "default"})
    if attempt <= step.rate_limit_attempts:
        return _rate_limited(out, step)
    if step.auth_failure:
        return _auth_failed(out)
    per_turn = _split_usage(step.usage, len(step.edits) + len(step.commands) + 1)
    out.assistant([{"type": "text", "text": f"Iteration {iteration}: working on it."}], per_turn)
    denials = [denial for number, edit in enumerate(step.edits) if (denial := _do_edit(out, edit, number, per_turn))]
    for number, command in enumerate(step.commands):
        _run_command(out, command, number, per_turn)
    after_work(step, hang=lambda: time.sleep(3600))
    message = step.message + (f"\n\n{args.done_marker}" if step.claim_done else "")
    out.assistant([{"type": "text", "text": message}], per_turn)
    if step.crash == "before_result":
        return 1
    out.emit({**_result(step, message, is_error=step.is_error or step.exit_code != 0), "permission_denials": denials})
    return step.exit_code


def _rate_limited(out: Emitter, step: Step) -> int:
    reset = int(time.time() + step.rate_limit_reset_in)
    text = f"Claude AI usage limit reached|{reset}"
    out.emit({**_result(step, text, is_error=True), "api_error_status": 429,
              "usage": {"input_tokens": 0, "output_tokens": 0}, "total_cost_usd": 0})
    return 1


AUTH_MESSAGE = "Invalid API key · Fix external API key"
DEFAULT_MAX_RETRIES = 10


def _auth_failed(out: Emitter) -> int:
    limit = int(os.environ.get("CLAUDE_CODE_MAX_RETRIES") or DEFAULT_MAX_RETRIES)
    for attempt in range(1, limit + 1):
        delay = min(32.0, 0.5 * 2 ** (attempt - 1))
        out.emit({"type": "system", "subtype": "api_retry", "attempt": attempt, "max_retries": limit,
                  "retry_delay_ms": delay * 1000, "error_status": 401, "error": "authentication_failed"})
        time.sleep(delay)
    message = {"id": str(uuid.uuid4()), "model": "<synthetic>", "role": "assistant", "stop_reason": "stop_sequence",
               "type": "message", "usage": {"input_tokens": 0, "output_tokens": 0},
               "content": [{"type": "text", "text": AUTH_MESSAGE}]}
    out.emit({"type": "assistant", "message": message, "parent_tool_use_id": None, "error": "authentication_failed"})
    out.emit({**_result(Step(), AUTH_MESSAGE, is_error=True), "api_error_status": 401, "num_turns": 1,
              "stop_reason": "stop_sequence", "total_cost_usd": 0, "usage": {"input_tokens": 0, "output_tokens": 0}})
    return 1


def _result(step: Step, text: str, *, is_error: bool) -> dict[str, Any]:
    return {
        "type": "result",
        "subtype": "success",
        "is_error": is_error,
        "api_error_status": None,
        "num_turns": len(step.edits) + 1,
        "result": text,
        "stop_reason": "end_turn",
        "total_cost_usd": float(step.cost_usd),
        "usage": {"input_tokens": step.usage.get("input_tokens", 0),
                  "output_tokens": step.usage.get("output_tokens", 0),
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        "permission_denials": [],
        "terminal_reason": "completed",
    }


def _split_usage(usage: dict[str, int], turns: int) -> dict[str, int]:
    return {key: value // max(1, turns) for key, value in usage.items()}


def _do_edit(out: Emitter, edit: Edit, number: int, usage: dict[str, int]) -> dict[str, Any] | None:
    """Apply one edit as a tool call; a denied one is refused as Claude Code refuses it (returned)."""
    tool_id = f"toolu_scripted_{out.turn}_{number}"
    name = "Write" if edit.write is not None or edit.append is not None else "Edit"
    out.assistant([{"type": "tool_use", "id": tool_id, "name": name, "input": {"file_path": edit.path}}], usage)
    if edit.denied:
        target = str(Path(edit.path).resolve())
        out.tool_result(tool_id, f"Claude requested permissions to write to {target}, but you haven't granted it yet.",
                        is_error=True)
        return {"tool_name": name, "tool_use_id": tool_id, "tool_input": {"file_path": target}}
    error = try_apply(edit)
    if error is not None:
        out.tool_result(tool_id, f"Error: {error}", is_error=True)
        return None
    out.tool_result(tool_id, f"Edited {edit.path}")
    return None


def try_apply(edit: Edit) -> str | None:
    """Apply `edit`; the error text when it cannot be applied (the agent reports it and goes on)."""
    try:
        apply_edit(edit)
    except OSError as exc:
        return str(exc)
    return None


def apply_edit(edit: Edit) -> None:
    path = Path(edit.path)
    if edit.delete:
        path.unlink()
        return
    if edit.symlink_to is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(edit.symlink_to)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if edit.write is not None:
        path.write_text(edit.write)
    elif edit.append is not None:
        with path.open("a") as handle:
            handle.write(edit.append)
    elif edit.replace is not None:
        old, new = edit.replace
        text = path.read_text()
        if old not in text:
            raise OSError(f"text to replace not found in {edit.path}")
        path.write_text(text.replace(old, new, 1))


def _run_command(out: Emitter, argv: tuple[str, ...], number: int, usage: dict[str, int]) -> None:
    tool_id = f"toolu_scripted_cmd_{out.turn}_{number}"
    out.assistant([{"type": "tool_use", "id": tool_id, "name": "Bash", "input": {"command": " ".join(argv)}}], usage)
    text, code = run_command(argv)
    out.tool_result(tool_id, text, is_error=code != 0)


def run_command(argv: tuple[str, ...]) -> tuple[str, int]:
    """Run a scenario command: the tail of its output and its exit code (127 when it cannot run)."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"Error: {exc}", 127
    return (done.stdout + done.stderr)[-2000:], done.returncode


def after_work(step: Step, *, hang: Callable[[], None]) -> None:
    """After the edits and commands: update the plan, then crash, wait or `hang` as the scenario says."""
    update_plan(step)
    if step.crash == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if step.delay:
        time.sleep(step.delay)
    if step.crash == "hang":
        hang()


def update_plan(step: Step) -> None:
    plan = Path("IMPLEMENTATION_PLAN.md")
    if not (step.plan_check or step.plan_add) or not plan.exists():
        return
    lines = plan.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.lstrip().startswith("- [ ]") and any(item in line for item in step.plan_check):
            lines[index] = line.replace("- [ ]", "- [x]", 1)
    lines += [f"- [ ] {item}" for item in step.plan_add]
    plan.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
