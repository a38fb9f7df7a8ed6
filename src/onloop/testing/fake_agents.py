"""Fake agent CLIs: stand-ins for `codex exec --json`, `opencode run --format json`, aider and any command.

One executable impersonates each CLI's output format, line for line as the real CLIs print it (the
shapes are copied from transcripts of real runs, `tests/data/agent-cli/`), while doing what a scenario
(`onloop.testing.scenario`) says for this iteration (`ONLOOP_ITERATION`, `ONLOOP_ATTEMPT` come from
onloop): edit files in the current directory, run commands, update the plan, report usage and cost,
hit a rate limit, crash, hang, or exit non-zero. So each adapter's argv, environment, parser and the
loop around it run for real, with no model behind them.

    python -m onloop.testing.fake_agents codex --scenario scenario.toml  [codex exec arguments...]

The adapter appends the real CLI's arguments to that command; the fake reads the few it needs (where
the prompt is, where to write the last message) and refuses the ones onloop must never pass (`--trust`
to Codex), exiting 2 like a CLI rejecting its arguments, so an argv regression shows up in the tests.

Per CLI:
- codex: thread/turn/item JSON lines; a limit is ``error`` + ``turn.failed`` ("You've hit your usage
  limit ... try again in N seconds"), exit 1; a hang prints ``Reconnecting...`` error lines forever,
  as the real one does against a dead endpoint; a refused key (`auth_failure`) prints ``Reconnecting...
  n/5 (unexpected status 401 Unauthorized ...)`` with codex-cli 0.171.0's backoff (0.2 s, doubling), as
  many times as the provider's ``stream_max_retries`` in ``$CODEX_HOME/config.toml`` says (5 when it
  says nothing), then ``error`` + ``turn.failed``, exit 1;
- opencode: step_start/text/tool_use/step_finish JSON lines; a limit is an ``error`` event with an
  ``APIError`` of status 429;
- aider: plain text (banner, reply, ``Tokens: ... Cost: ...``, ``Applied edit to ...``); a limit is
  litellm's ``RateLimitError`` text and aider's retry lines, with no answer after them;
- command: plain text, or with ``--output jsonl`` the generic backend's JSON-lines schema.

A hang also starts a child process and writes its pid to ``$ONLOOP_SCRATCH/fake-agent-child.pid``, so
tests can check that a timeout kills the whole process group, not just the agent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from onloop.testing.scenario import Edit, Step, load_scenario
from onloop.testing.scripted_agent import DEFAULT_MARKER, after_work, run_command, try_apply

CHILD_PID_FILE = "fake-agent-child.pid"


class FakeCli:
    """What every fake CLI does; subclasses only print in their CLI's format."""

    def __init__(self, args: argparse.Namespace, rest: list[str]) -> None:
        self.args = args
        self.rest = rest
        self.session = self.new_session_id()

    def new_session_id(self) -> str:
        return str(uuid.uuid4())

    def check_argv(self) -> str | None:
        """An error message if the adapter passed arguments the real CLI must not get."""
        return None

    def read_prompt(self) -> str:
        return sys.stdin.read()

    def start(self) -> None: ...

    def rate_limited(self, step: Step) -> int:
        raise NotImplementedError

    def auth_failed(self) -> int:
        """The provider refused the key: print what the real CLI prints, return its exit code."""
        raise NotImplementedError

    def working(self, step: Step, iteration: int) -> None: ...

    def edited(self, edit: Edit, error: str | None) -> None: ...

    def ran(self, argv: tuple[str, ...], output: str, code: int) -> None: ...

    def hanging(self) -> None:
        """Called once per second while hanging."""

    def finish(self, step: Step, message: str) -> None: ...

    def out(self, line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def emit(self, obj: dict[str, Any]) -> None:
        self.out(json.dumps(obj, separators=(",", ":")))


def run(cli: FakeCli, step: Step, iteration: int, attempt: int, marker: str) -> int:
    problem = cli.check_argv()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    cli.read_prompt()  # read it all, like the real CLIs, so onloop's writer never blocks
    cli.start()
    if attempt <= step.rate_limit_attempts:
        return cli.rate_limited(step)
    if step.auth_failure:
        return cli.auth_failed()
    cli.working(step, iteration)
    for edit in step.edits:
        cli.edited(edit, "permission denied" if edit.denied else try_apply(edit))
    for argv in step.commands:
        cli.ran(argv, *run_command(argv))
    after_work(step, hang=lambda: _hang(cli))
    if step.crash == "before_result":
        return 1
    cli.finish(step, step.message + (f"\n\n{marker}" if step.claim_done else ""))
    return step.exit_code


def _hang(cli: FakeCli) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    scratch = os.environ.get("ONLOOP_SCRATCH")
    if scratch:
        Path(scratch, CHILD_PID_FILE).write_text(str(child.pid))
    for _ in range(3600):
        cli.hanging()
        time.sleep(1)


def split_usage(usage: dict[str, int], parts: int) -> list[dict[str, int]]:
    """`usage` cut into `parts` pieces that add up exactly (the last piece takes the remainder)."""
    parts = max(1, parts)
    pieces = [{k: v // parts for k, v in usage.items()} for _ in range(parts)]
    for key, value in usage.items():
        pieces[-1][key] = value - (value // parts) * (parts - 1)
    return pieces


def _now_ms() -> int:
    return int(time.time() * 1000)


def _rel(path: str) -> str:
    return str(Path(os.getcwd(), path))


class FakeCodex(FakeCli):
    """`codex exec --json`: thread.started, turn.started, item.*, turn.completed or turn.failed."""

    def __init__(self, args: argparse.Namespace, rest: list[str]) -> None:
        super().__init__(args, rest)
        self.items = 0
        self.last_message_file = _option(rest, "-o", "--output-last-message")

    def check_argv(self) -> str | None:
        if "--trust" in self.rest:
            return "fake codex: onloop must never pass --trust"
        if "exec" not in self.rest or "--json" not in self.rest or self.rest[-1] != "-":
            return "fake codex: expected `exec --json ... -` (prompt on stdin)"
        if not Path(os.environ.get("CODEX_HOME", "/nonexistent"), "config.toml").is_file():
            return "fake codex: $CODEX_HOME/config.toml is missing"
        return None

    def read_prompt(self) -> str:
        print("Reading additional input from stdin...", file=sys.stderr, flush=True)
        return sys.stdin.read()

    def item(self, kind: str, item: dict[str, Any]) -> None:
        self.emit({"type": kind, "item": item})

    def next_id(self) -> str:
        self.items += 1
        return f"item_{self.items - 1}"

    def start(self) -> None:
        self.emit({"type": "thread.started", "thread_id": self.session})
        self.emit({"type": "turn.started"})

    def rate_limited(self, step: Step) -> int:
        text = (f"You've hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro) or try again "
                f"in {max(1, round(step.rate_limit_reset_in))} seconds.")
        self.emit({"type": "error", "message": text})
        self.emit({"type": "turn.failed", "error": {"message": text}})
        return 1

    def auth_failed(self) -> int:
        retries = _codex_stream_retries()
        text = ("unexpected status 401 Unauthorized: Incorrect API key provided: sk-dummy. You can find your API "
                "key at https://platform.openai.com/account/api-keys., url: http://127.0.0.1:9/v1/responses")
        for attempt in range(1, retries + 1):
            self.emit({"type": "error", "message": f"Reconnecting... {attempt}/{retries} ({text})"})
            time.sleep(0.2 * 2 ** (attempt - 1))
        self.emit({"type": "error", "message": text})
        self.emit({"type": "turn.failed", "error": {"message": text}})
        return 1

    def working(self, step: Step, iteration: int) -> None:
        self.item("item.completed", {"id": self.next_id(), "type": "reasoning", "text": f"**Iteration {iteration}**"})
        self.item("item.completed", {"id": self.next_id(), "type": "agent_message",
                                     "text": f"Iteration {iteration}: working on it."})

    def edited(self, edit: Edit, error: str | None) -> None:
        kind = "delete" if edit.delete else ("add" if edit.write is not None else "update")
        item = {"id": self.next_id(), "type": "file_change", "changes": [{"path": _rel(edit.path), "kind": kind}],
                "status": "in_progress"}
        self.item("item.started", item)
        self.item("item.completed", {**item, "status": "failed" if error else "completed"})

    def ran(self, argv: tuple[str, ...], output: str, code: int) -> None:
        command = "/bin/bash -lc " + json.dumps(" ".join(argv))
        item = {"id": self.next_id(), "type": "command_execution", "command": command, "aggregated_output": "",
                "exit_code": None, "status": "in_progress"}
        self.item("item.started", item)
        self.item("item.completed", {**item, "aggregated_output": output, "exit_code": code,
                                     "status": "completed" if code == 0 else "failed"})

    def hanging(self) -> None:
        self.emit({"type": "error", "message": "Reconnecting... 1/5 (stream disconnected before completion: "
                                               "error sending request for url (http://127.0.0.1:9/v1/responses))"})

    def finish(self, step: Step, message: str) -> None:
        self.item("item.completed", {"id": self.next_id(), "type": "agent_message", "text": message})
        if self.last_message_file:
            Path(self.last_message_file).write_text(message)
        if step.is_error:
            self.emit({"type": "error", "message": "unexpected status 500 Internal Server Error: boom"})
            self.emit({"type": "turn.failed", "error": {"message": "unexpected status 500 Internal Server Error"}})
            return
        self.emit({"type": "turn.completed", "usage": {
            "input_tokens": step.usage.get("input_tokens", 0), "cached_input_tokens": 0,
            "cache_write_input_tokens": 0, "output_tokens": step.usage.get("output_tokens", 0),
            "reasoning_output_tokens": 0}})


def _codex_stream_retries() -> int:
    """The active provider's `stream_max_retries` in `$CODEX_HOME/config.toml`, else Codex's default (5)."""
    import tomllib

    try:
        config = tomllib.loads(Path(os.environ.get("CODEX_HOME", "/nonexistent"), "config.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return 5
    provider = config.get("model_providers", {}).get(str(config.get("model_provider", "")), {})
    return int(provider.get("stream_max_retries", 5))


class FakeOpencode(FakeCli):
    """`opencode run --format json`: step_start, text, tool_use, step_finish (tokens and cost)."""

    def __init__(self, args: argparse.Namespace, rest: list[str]) -> None:
        super().__init__(args, rest)
        self.message_id = self.part_id("msg")
        self.parts: list[tuple[str, dict[str, Any]]] = []  # (type, part) of the current step

    def new_session_id(self) -> str:
        return "ses_" + uuid.uuid4().hex[:26]

    def part_id(self, prefix: str = "prt") -> str:
        return f"{prefix}_" + uuid.uuid4().hex[:26]

    def check_argv(self) -> str | None:
        if "run" not in self.rest or _option(self.rest, "--format") != "json":
            return "fake opencode: expected `run --format json`"
        config = Path(os.environ.get("XDG_CONFIG_HOME", "/nonexistent"), "opencode", "opencode.json")
        if not config.is_file():
            return "fake opencode: $XDG_CONFIG_HOME/opencode/opencode.json is missing"
        return None

    def event(self, kind: str, part: dict[str, Any]) -> None:
        base = {"id": self.part_id(), "messageID": self.message_id, "sessionID": self.session}
        self.emit({"type": kind, "timestamp": _now_ms(), "sessionID": self.session, "part": {**base, **part}})

    def step_start(self) -> None:
        self.message_id = self.part_id("msg")
        self.event("step_start", {"snapshot": uuid.uuid4().hex[:40], "type": "step-start"})

    def step_finish(self, reason: str, usage: dict[str, int], cost: float) -> None:
        tokens = {"total": usage.get("input_tokens", 0) + usage.get("output_tokens", 0),
                  "input": usage.get("input_tokens", 0), "output": usage.get("output_tokens", 0), "reasoning": 0,
                  "cache": {"write": 0, "read": 0}}
        self.event("step_finish", {"reason": reason, "snapshot": uuid.uuid4().hex[:40], "type": "step-finish",
                                   "tokens": tokens, "cost": cost})

    def text(self, text: str) -> None:
        now = _now_ms()
        self.event("text", {"type": "text", "text": text, "time": {"start": now, "end": now}})

    def rate_limited(self, step: Step) -> int:
        self.emit({"type": "error", "timestamp": _now_ms(), "sessionID": self.session, "error": {
            "name": "APIError", "data": {
                "message": f"Rate limit exceeded. Please try again in {max(1, round(step.rate_limit_reset_in))}s.",
                "statusCode": 429, "isRetryable": True}}})
        return 0

    def auth_failed(self) -> int:
        self.emit({"type": "error", "timestamp": _now_ms(), "sessionID": self.session, "error": {
            "name": "APIError", "data": {"message": "Incorrect API key provided", "statusCode": 401,
                                         "isRetryable": False}}})
        return 1

    def working(self, step: Step, iteration: int) -> None:
        if step.edits or step.commands:
            self.step_start()
            self.text(f"Iteration {iteration}: working on it.")

    def tool(self, name: str, inputs: dict[str, Any], output: str, error: str | None, meta: dict[str, Any]) -> None:
        now = _now_ms()
        state: dict[str, Any] = {"status": "error", "input": inputs, "error": error, "time": {"start": now, "end": now}}
        if error is None:
            state = {"status": "completed", "input": inputs, "output": output, "metadata": meta,
                     "title": str(inputs.get("filePath") or inputs.get("command")), "time": {"start": now, "end": now}}
        self.event("tool_use", {"type": "tool", "tool": name, "callID": self.part_id("call"), "state": state})

    def edited(self, edit: Edit, error: str | None) -> None:
        name = "edit" if edit.replace is not None else "write"
        self.tool(name, {"filePath": _rel(edit.path)}, "Edit applied successfully.", error, {"diagnostics": {}})

    def ran(self, argv: tuple[str, ...], output: str, code: int) -> None:
        command = " ".join(argv)
        self.tool("bash", {"command": command, "description": command}, output, None,
                  {"output": output, "exit": code, "truncated": False})

    def finish(self, step: Step, message: str) -> None:
        work, final = split_usage(step.usage, 2) if (step.edits or step.commands) else ({}, step.usage)
        if work:
            self.step_finish("tool-calls", work, 0)
        self.step_start()
        self.text(message)
        if step.is_error:
            self.emit({"type": "error", "timestamp": _now_ms(), "sessionID": self.session,
                       "error": {"name": "UnknownError", "data": {"message": "boom"}}})
            return
        self.step_finish("stop", final, float(step.cost_usd))


class FakeAider(FakeCli):
    """aider with `--no-pretty --no-stream`: human text only."""

    def __init__(self, args: argparse.Namespace, rest: list[str]) -> None:
        super().__init__(args, rest)
        self.applied: list[str] = []
        self.outputs: list[str] = []  # what its test command printed, shown after the edits

    def check_argv(self) -> str | None:
        needed = ("--yes-always", "--no-auto-commits", "--no-suggest-shell-commands", "--message-file")
        missing = [flag for flag in needed if flag not in self.rest]
        return f"fake aider: missing {', '.join(missing)}" if missing else None

    def read_prompt(self) -> str:
        return Path(_option(self.rest, "--message-file") or "/nonexistent").read_text()

    def start(self) -> None:
        model = _option(self.rest, "--model") or "gpt-4o"
        for line in ("Aider v0.86.2", f"Model: {model} with whole edit format", "Git repo: .git with 3 files",
                     "Repo-map: disabled", ""):
            self.out(line)

    def rate_limited(self, step: Step) -> int:
        for delay in ("0.2", "0.5", "1.0"):
            self.out("litellm.RateLimitError: RateLimitError: OpenAIException - Error code: 429 - {'error': "
                     "{'message': 'Rate limit reached for requests', 'type': 'requests', "
                     "'code': 'rate_limit_exceeded'}}")
            self.out("The API provider has rate limited you. Try again later or check your quotas.")
            self.out(f"Retrying in {delay} seconds...")
        return 0

    def auth_failed(self) -> int:
        self.out("litellm.AuthenticationError: AuthenticationError: OpenAIException - Error code: 401 - {'error': "
                 "{'message': 'Incorrect API key provided', 'type': 'invalid_request_error', 'code': "
                 "'invalid_api_key'}}")
        self.out("The API provider is not able to authenticate you. Check your API key.")
        return 1

    def edited(self, edit: Edit, error: str | None) -> None:
        if error is None:
            self.applied.append(edit.path)

    def ran(self, argv: tuple[str, ...], output: str, code: int) -> None:
        self.outputs.append(output.rstrip())

    def finish(self, step: Step, message: str) -> None:
        self.out(message)
        self.out("")
        for path in self.applied:
            self.out(f"{path}\n```\n...\n```\n")
        sent, received = step.usage.get("input_tokens", 0), step.usage.get("output_tokens", 0)
        cost = step.cost_usd
        self.out(f"Tokens: {aider_tokens(sent)} sent, {aider_tokens(received)} received. "
                 f"Cost: ${cost} message, ${cost} session.")
        for path in self.applied:
            self.out(f"Applied edit to {path}")
        for output in self.outputs:
            self.out(output)
        if step.is_error:
            self.out("litellm.APIError: APIError: OpenAIException - boom")


def aider_tokens(count: int) -> str:
    """Token counts the way aider prints them (its `format_tokens`)."""
    if count < 1000:
        return str(count)
    if count < 10000:
        return f"{count / 1000:.1f}k"
    if count < 1_000_000:
        return f"{round(count / 1000)}k"
    return f"{count / 1_000_000:.1f}M"


class FakeCommand(FakeCli):
    """Any command: text lines, or the generic backend's JSON lines with `--output jsonl`."""

    def jsonl(self) -> bool:
        return bool(self.args.output == "jsonl")

    def say(self, text: str) -> None:
        if self.jsonl():
            self.emit({"type": "message", "text": text})
        else:
            self.out(text)

    def rate_limited(self, step: Step) -> int:
        seconds = max(1, round(step.rate_limit_reset_in))
        text = f"Error: rate limit exceeded (429 Too Many Requests); try again in {seconds} seconds"
        self.say(text)
        return 75

    def auth_failed(self) -> int:
        if self.jsonl():
            self.emit({"type": "error", "message": "401 Unauthorized: invalid API key"})
        else:
            self.out("Error: 401 Unauthorized: invalid API key")
        return 1

    def working(self, step: Step, iteration: int) -> None:
        self.say(f"Iteration {iteration}: working on it.")

    def edited(self, edit: Edit, error: str | None) -> None:
        if self.jsonl():
            self.emit({"type": "tool_call", "name": "edit", "input": {"path": edit.path}, "error": error})
        else:
            self.out(f"edited {edit.path}" if error is None else f"failed to edit {edit.path}: {error}")

    def ran(self, argv: tuple[str, ...], output: str, code: int) -> None:
        if self.jsonl():
            self.emit({"type": "tool_call", "name": "run", "input": {"argv": list(argv)}, "exit_code": code})
        else:
            self.out(f"$ {' '.join(argv)}\n{output.rstrip()}")

    def finish(self, step: Step, message: str) -> None:
        if not self.jsonl():
            self.out(message)
            return
        self.emit({"type": "usage", **step.usage, "cost_usd": step.cost_usd})
        self.emit({"type": "result", "text": message, "session_id": self.session,
                   "status": "failed" if step.is_error else "ok"})


CLIS: dict[str, type[FakeCli]] = {"codex": FakeCodex, "opencode": FakeOpencode, "aider": FakeAider,
                                  "command": FakeCommand}


def _option(argv: list[str], *names: str) -> str | None:
    """The value after the last of `names` in `argv` (`--name value` or `--name=value`)."""
    value = None
    for index, arg in enumerate(argv):
        for name in names:
            if arg == name and index + 1 < len(argv):
                value = argv[index + 1]
            elif arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onloop-fake-agent", allow_abbrev=False)
    parser.add_argument("cli", choices=sorted(CLIS))
    parser.add_argument("--scenario", required=True, type=Path)
    parser.add_argument("--done-marker", default=DEFAULT_MARKER)
    parser.add_argument("--output", choices=("text", "jsonl"), default="text", help="command only")
    args, rest = parser.parse_known_args(argv)
    iteration = int(os.environ.get("ONLOOP_ITERATION", "1"))
    attempt = int(os.environ.get("ONLOOP_ATTEMPT", "1"))
    step = load_scenario(args.scenario).step(iteration)
    return run(CLIS[args.cli](args, rest), step, iteration, attempt, args.done_marker)


if __name__ == "__main__":
    raise SystemExit(main())
