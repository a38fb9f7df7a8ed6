"""Opt-in: the real agent CLIs against onloop's fake model server, through their adapters.

Skipped unless the binary is on PATH and ONLOOP_REAL_CLI_TESTS=1. The model is always the fake server
on 127.0.0.1, so these never leave the machine; they check that the argv, environment and generated
config of each adapter still work with the installed version of the CLI, and that its parser reads
what that version prints.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from backendhelpers import Harness

from onloop.backends.aider import AiderBackend, AiderOptions
from onloop.backends.base import AgentStatus
from onloop.backends.claude_code import ClaudeCodeBackend, ClaudeOptions
from onloop.backends.codex import CodexBackend, CodexOptions
from onloop.backends.opencode import OpencodeBackend, OpencodeOptions
from onloop.safety import allow_real_calls
from onloop.testing.fake_model_server import FakeModelServer, Turn, tool_call
from onloop.usage import CostSource

pytestmark = pytest.mark.real_cli
FIXED = '"""Tiny calculator module used as an agent playground."""\n\n\ndef add(a, b):\n    return a + b\n'


def require(binary: str) -> str:
    found = shutil.which(binary)
    if found is None or os.environ.get("ONLOOP_REAL_CLI_TESTS") != "1":
        pytest.skip(f"needs {binary} on PATH and ONLOOP_REAL_CLI_TESTS=1")
    return found


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A state dir outside /tmp (Codex refuses helper binaries under a temporary directory)."""
    path = Path.home() / ".cache" / "onloop-real-cli-tests" / uuid.uuid4().hex
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_real_codex(harness: Harness, outside_tmp: Path) -> None:
    binary = require("codex")
    turns = [Turn(tool_calls=(tool_call("exec_command", cmd="sed -i 's/a - b/a + b/' calc.py"),)),
             Turn(text="Fixed add().")]
    with FakeModelServer(turns, default=Turn(text="ok")) as server, allow_real_calls():
        backend = CodexBackend("codex", CodexOptions(command=[binary], model="fake-model",
                                                     base_url=server.openai_base_url, codex_home=str(outside_tmp)))
        result = backend.run(harness.request(timeout=120))
    assert result.status is AgentStatus.OK, result.error
    assert result.final_message == "Fixed add()."
    assert result.usage.input_tokens > 0 and result.session_id
    assert "a + b" in (harness.repo / "calc.py").read_text()


def test_real_claude(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = require("claude")
    monkeypatch.setenv("ONLOOP_TEST_ANTHROPIC_KEY", "sk-ant-test")
    edit = tool_call("Edit", file_path=str(harness.repo / "calc.py"), old_string="return a - b",
                     new_string="return a + b")
    read = tool_call("Read", file_path=str(harness.repo / "calc.py"))  # Claude Code edits only what it read
    turns = [Turn(tool_calls=(read,)), Turn(tool_calls=(edit,)), Turn(text="Fixed add().")]
    with FakeModelServer(turns, default=Turn(text="ok")) as server, allow_real_calls():
        backend = ClaudeCodeBackend("claude", ClaudeOptions(command=[binary], model="fake-claude", base_url=server.url,
                                                            api_key_env="ONLOOP_TEST_ANTHROPIC_KEY"))
        result = backend.run(harness.request(timeout=120, env={"HOME": str(harness.root)}))
    assert result.status is AgentStatus.OK, result.error
    assert result.final_message == "Fixed add()."
    assert result.cost.source is CostSource.UNKNOWN  # a custom base_url: Claude's own dollars mean nothing
    assert "a + b" in (harness.repo / "calc.py").read_text()


def test_real_aider(harness: Harness) -> None:
    binary = require("aider")
    reply = f"Fixed.\n\ncalc.py\n```\n{FIXED}```\n"
    with FakeModelServer([Turn(text=reply)], default=Turn(text="fix: add")) as server, allow_real_calls():
        backend = AiderBackend("aider", AiderOptions(command=[binary], model="openai/fake-model",
                                                     base_url=server.openai_base_url, edit_format="whole",
                                                     files=["calc.py"]))
        result = backend.run(harness.request(timeout=180))
    assert result.status is AgentStatus.OK, result.error
    assert result.usage.input_tokens > 0
    assert (harness.repo / "calc.py").read_text() == FIXED


def test_real_aider_never_takes_a_protected_file_it_reads_about(harness: Harness) -> None:
    # The answer names a protected file and a test file: with --yes-always aider 0.86 once added both
    # to the chat as editable (its "Add file to the chat?" answered yes) and sent them whole.
    binary = require("aider")
    secret_line = "budget_usd = 'the-operators-own-line'"
    (harness.repo / "onloop.toml").write_text(f"[run]\n{secret_line}\n")
    (harness.repo / "test_calc.py").write_text("from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n")
    subprocess.run(["git", "add", "-A"], cwd=harness.repo, check=True)
    subprocess.run(["git", "commit", "-qm", "config and test"], cwd=harness.repo, check=True)
    reply = (f"Fixed add. I did not need onloop.toml; test_calc.py already covers it.\n\ncalc.py\n```\n{FIXED}```\n")
    # aider drops the edits of an answer that named a file it then added (test_calc.py) and asks again.
    again = Turn(text=f"Fixed add.\n\ncalc.py\n```\n{FIXED}```\n")
    with FakeModelServer([Turn(text=reply)], default=again) as server, \
            allow_real_calls():
        backend = AiderBackend("aider", AiderOptions(command=[binary], model="openai/fake-model",
                                                     base_url=server.openai_base_url, edit_format="whole",
                                                     files=["calc.py"]), protected=("onloop.toml",))
        result = backend.run(harness.request(timeout=180, prompt="Fix add() in calc.py; onloop.toml is not yours."))
        sent = json.dumps([r.body for r in server.requests])
    assert result.status is AgentStatus.OK, result.error
    assert secret_line not in sent, "the protected file reached the model"
    assert (harness.repo / "calc.py").read_text() == FIXED
    assert result.final_message == "Fixed add.", result.final_message


def test_real_opencode(harness: Harness, outside_tmp: Path) -> None:
    binary = require("opencode")
    edit = tool_call("edit", filePath=str(harness.repo / "calc.py"), oldString="    return a - b",
                     newString="    return a + b")
    # opencode first asks, without tools, for a title for the session; then it does the work.
    turns = [Turn(text="Fix add()"), Turn(tool_calls=(edit,)), Turn(text="Fixed add().")]
    with FakeModelServer(turns, default=Turn(text="Fix")) as server, allow_real_calls():
        backend = OpencodeBackend("opencode", OpencodeOptions(command=[binary], model="fake-model",
                                                              base_url=server.openai_base_url,
                                                              config_home=str(outside_tmp)))
        result = backend.run(harness.request(timeout=180))
    assert result.status is AgentStatus.OK, result.error
    assert result.final_message == "Fixed add()."
    assert "a + b" in (harness.repo / "calc.py").read_text()


def test_real_codex_against_a_dead_endpoint_is_killed_by_the_timeout(harness: Harness, outside_tmp: Path) -> None:
    binary = require("codex")
    with allow_real_calls():
        backend = CodexBackend("codex", CodexOptions(command=[binary], model="fake-model",
                                                     base_url="http://127.0.0.1:9/v1", codex_home=str(outside_tmp)))
        result = backend.run(harness.request(timeout=8))
    assert result.status is AgentStatus.TIMEOUT
    assert "reconnecting" in (result.error or "").lower()


def test_real_claude_in_the_loop_under_the_sandbox(make_repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole stack: onloop's bwrap sandbox with model-only network around the real Claude Code (with
    its own sandbox and onloop's guard hook inside), the fake model behind the bridge, gates and audit."""
    from tests.loop.helpers import workspace

    from onloop.loop.api import start_run
    from onloop.loop.stop import StopReason
    from onloop.store import runs as store
    from onloop.store.db import Database
    from onloop.testing import Scenario

    binary = require("claude")
    monkeypatch.setenv("ONLOOP_TEST_ANTHROPIC_KEY", "sk-ant-test")
    worktree_calc = "calc.py"
    turns = [Turn(tool_calls=(tool_call("Bash", command="rm -rf tests", description="clean up"),)),
             Turn(tool_calls=(tool_call("Read", file_path=worktree_calc),)),
             Turn(tool_calls=(tool_call("Edit", file_path=worktree_calc, old_string="return a + b\n",
                                        new_string="return a + b\n\n\ndef mul(a, b):\n    return a * b\n"),)),
             Turn(text="Added mul(). <onloop:done/>")]
    with FakeModelServer(turns, default=Turn(text="ok")) as server, allow_real_calls():
        extra = (f'[policy]\nnetwork = "model-only"\n\n[backends.claude]\nkind = "claude_code"\n'
                 f'command = ["{binary}"]\nmodel = "fake-claude"\nbase_url = "{server.url}"\n'
                 'api_key_env = "ONLOOP_TEST_ANTHROPIC_KEY"\n')
        repo = workspace(make_repo, tmp_path, Scenario(()), items=[], extra=extra)
        db = Database.open_default()
        outcome = start_run(repo, db=db, backend="claude", max_iterations=1)
    row = store.get_run(db, outcome.run_id)
    transcript = store.get_iteration(db, row.id, 1)["transcript_path"]
    receipt = store.get_iteration(db, row.id, 1)["receipt_json"]
    assert outcome.reason is StopReason.DONE, (receipt, Path(transcript).read_text()[-3000:])
    assert "def mul" in (Path(row.worktree) / "calc.py").read_text()
    assert (Path(row.worktree) / "tests" / "test_calc.py").exists(), "the guard hook denied the shell command"
    assert '"tool_name": "Bash"' in receipt or "Bash" in Path(transcript).read_text().split('"permission_denials"')[-1]


def test_real_codex_in_the_loop_under_the_sandbox(make_repo, tmp_path: Path, outside_tmp: Path) -> None:
    """Real Codex with its own sandbox nested inside onloop's bwrap, model-only network, the fake model."""
    from tests.loop.helpers import workspace

    from onloop.loop.api import start_run
    from onloop.loop.stop import StopReason
    from onloop.store import runs as store
    from onloop.store.db import Database
    from onloop.testing import Scenario

    binary = require("codex")
    patch = "printf '\\n\\ndef mul(a, b):\\n    return a * b\\n' >> calc.py"
    turns = [Turn(tool_calls=(tool_call("exec_command", cmd=patch),)), Turn(text="Added mul(). <onloop:done/>")]
    with FakeModelServer(turns, default=Turn(text="ok")) as server, allow_real_calls():
        extra = (f'[policy]\nnetwork = "model-only"\n\n[backends.codex]\nkind = "codex"\n'
                 f'command = ["{binary}"]\nmodel = "fake-model"\nbase_url = "{server.openai_base_url}"\n'
                 f'codex_home = "{outside_tmp}"\n')
        repo = workspace(make_repo, tmp_path, Scenario(()), items=[], extra=extra)
        db = Database.open_default()
        outcome = start_run(repo, db=db, backend="codex", max_iterations=1)
    row = store.get_run(db, outcome.run_id)
    transcript = Path(store.get_iteration(db, row.id, 1)["transcript_path"]).read_text()
    assert outcome.reason is StopReason.DONE, transcript[-3000:]
    assert "def mul" in (Path(row.worktree) / "calc.py").read_text()


ANTHROPIC_401 = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
OPENAI_401 = {"error": {"message": "Incorrect API key provided: sk-dummy.", "type": "invalid_request_error",
                        "param": None, "code": "invalid_api_key"}}


def test_real_claude_refused_key_is_auth_failed_within_seconds(harness: Harness,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    binary = require("claude")
    monkeypatch.setenv("ONLOOP_TEST_ANTHROPIC_KEY", "sk-ant-refused")
    with FakeModelServer([], default=Turn(status=401, error=ANTHROPIC_401)) as server, allow_real_calls():
        backend = ClaudeCodeBackend("claude", ClaudeOptions(command=[binary], model="fake-claude", base_url=server.url,
                                                            api_key_env="ONLOOP_TEST_ANTHROPIC_KEY"))
        started = time.monotonic()
        result = backend.run(harness.request(timeout=300, env={"HOME": str(harness.root)}))
        seconds = time.monotonic() - started
        calls = len([r for r in server.requests if r.wire == "anthropic"])
    assert result.status is AgentStatus.AUTH_FAILED, result.error
    assert "ANTHROPIC_API_KEY" in (result.error or "") and "Invalid API key" in (result.error or "")
    assert calls == 3 and seconds < 15  # one call and the two retries CLAUDE_CODE_MAX_RETRIES allows


def test_real_codex_refused_key_is_stopped_at_the_second_refusal(harness: Harness, outside_tmp: Path) -> None:
    import time

    binary = require("codex")
    with FakeModelServer([], default=Turn(status=401, error=OPENAI_401)) as server, allow_real_calls():
        backend = CodexBackend("codex", CodexOptions(command=[binary], model="fake-model",
                                                     base_url=server.openai_base_url, codex_home=str(outside_tmp)))
        started = time.monotonic()
        result = backend.run(harness.request(timeout=300))
        seconds = time.monotonic() - started
    assert result.status is AgentStatus.AUTH_FAILED, result.error
    assert "401 Unauthorized" in (result.error or "") and "backends.codex.api_key_env" in (result.error or "")
    assert seconds < 10  # Codex alone retries five times, with a backoff of 6 s in all


def test_real_claude_guard_denial_is_reported(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A protected path: onloop's guard hook refuses the Edit; the run succeeds with the denial listed."""
    from onloop.backends.base import PermissionDenial
    from onloop.gates.hallucination import check_claimed_paths
    from onloop.policy.model import Policy

    binary = require("claude")
    monkeypatch.setenv("ONLOOP_TEST_ANTHROPIC_KEY", "sk-ant-test")
    calc = str(harness.repo / "calc.py")
    edit = tool_call("Edit", file_path=calc, old_string="return a - b", new_string="return a + b")
    turns = [Turn(tool_calls=(tool_call("Read", file_path=calc),)), Turn(tool_calls=(edit,)),
             Turn(text="I could not change calc.py: the edit was blocked by a hook.")]
    with FakeModelServer(turns, default=Turn(text="ok")) as server, allow_real_calls():
        backend = ClaudeCodeBackend("claude", ClaudeOptions(command=[binary], model="fake-claude", base_url=server.url,
                                                            api_key_env="ONLOOP_TEST_ANTHROPIC_KEY"),
                                    policy=Policy(protected=["calc.py"]))
        result = backend.run(harness.request(timeout=120, env={"HOME": str(harness.root)}))
    assert result.status is AgentStatus.OK, result.error
    assert result.permission_denials == (PermissionDenial("Edit", calc),)
    assert "a - b" in (harness.repo / "calc.py").read_text()
    assert check_claimed_paths(result.final_message, []) == []
