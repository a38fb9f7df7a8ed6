"""The built-in agent backend end to end: real HTTP to the fake model server, real files, real git,
a real `python -c` action under NoSandbox, in both the OpenAI and the Anthropic wire formats."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from agenthelpers import make_request

from onloop.backends import BackendSpec, create_backend
from onloop.backends.base import AgentEvent, AgentStatus
from onloop.backends.builtin import BuiltinBackend, create
from onloop.errors import ConfigError
from onloop.testing.fake_model_server import FakeModelServer, Turn, tool_call
from onloop.usage import CostSource, Usage

TEST_SCRIPT = "import sys; sys.path.insert(0, 'src'); from app import add; assert add(2, 3) == 5; print('tests passed')"


def script() -> list[Turn]:
    usage = Usage(1000, 100)
    return [
        Turn(text="Reading the code.", tool_calls=(tool_call("read_file", "c1", path="src/app.py"),), usage=usage),
        Turn(tool_calls=(tool_call("apply_patch", "c2", path="src/app.py",
                                   edits=[{"search": "a - b", "replace": "a + b"}]),), usage=usage),
        Turn(tool_calls=(tool_call("run_action", "c3", name="test"),), usage=usage),
        Turn(tool_calls=(tool_call("update_plan", "c4", action="check", item="fix add"),), usage=usage),
        Turn(text="Fixed add(). <onloop:done/>", usage=usage),
    ]


def tool_results(wire: str, body: dict[str, Any]) -> list[str]:
    if wire == "anthropic":
        return [block["content"] for message in body["messages"] if message["role"] == "user"
                for block in message["content"] if block.get("type") == "tool_result"]
    return [message["content"] for message in body["messages"] if message["role"] == "tool"]


@pytest.mark.parametrize(("provider", "stream"), [("openai", False), ("openai", True), ("anthropic", None)])
def test_multi_step_task_over_http(make_repo, tmp_path: Path, provider: str, stream: bool | None) -> None:  # type: ignore[no-untyped-def]
    if provider == "anthropic":
        pytest.importorskip("anthropic", reason="the anthropic extra is not installed")
    repo = make_repo({"src/app.py": "def add(a, b):\n    return a - b\n",
                      "IMPLEMENTATION_PLAN.md": "# Plan\n- [ ] fix add\n- [ ] docs\n"})
    with FakeModelServer(script()) as server:
        options: dict[str, Any] = {
            "provider": provider, "model": "claude-haiku-4-5" if provider == "anthropic" else "gpt-4o-mini",
            "base_url": server.url if provider == "anthropic" else server.openai_base_url, "stream": stream,
            "prices": {"input": "1.00", "output": "5.00"}, "max_turns": 10,
            "policy_actions": {"test": {"argv": [sys.executable, "-c", TEST_SCRIPT], "timeout": "30s"}},
        }
        backend = create_backend(BackendSpec("night", "builtin", options, repo))
        events: list[AgentEvent] = []
        result = backend.run(make_request(repo, tmp_path, events))
        server.assert_complete()
        requests = server.requests

    assert result.status is AgentStatus.OK, result.error
    assert result.final_message == "Fixed add(). <onloop:done/>"
    assert (repo / "src/app.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert (repo / "IMPLEMENTATION_PLAN.md").read_text() == "# Plan\n- [x] fix add\n- [ ] docs\n"
    assert result.usage == Usage(5000, 500)
    assert result.cost.amount == Decimal("0.0075") and result.cost.source is CostSource.PRICE_TABLE
    wire = "anthropic" if provider == "anthropic" else "chat"
    assert [r.wire for r in requests] == [wire] * 5
    results = tool_results(provider, requests[-1].body)
    assert results[0] == "def add(a, b):\n    return a - b\n"
    assert results[1] == "applied 1 edit(s) to src/app.py"
    assert results[2].startswith("action test: exit code 0") and "tests passed" in results[2]
    assert results[3].startswith("checked: - [x] fix add")
    assert [e.kind for e in events].count("tool_call") == 4 and events[-1].kind == "result"
    assert backend.parse_log(tmp_path / "agent.jsonl").usage == result.usage
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
    assert "src/app.py" in status  # the agent changed files; committing is the loop's job


def test_options_are_validated_with_keys_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        create(BackendSpec("night", "builtin", {"model": "m", "max_turns": 0}, tmp_path))
    assert caught.value.key == "backends.night.max_turns"
    with pytest.raises(ConfigError) as caught:
        create(BackendSpec("night", "builtin", {"model": "m", "temprature": 0.1}, tmp_path))
    assert caught.value.key == "backends.night.temprature"
    with pytest.raises(ConfigError) as caught:
        create(BackendSpec("night", "builtin", {"model": "m", "policy_actions": {"t": {"argv": []}}}, tmp_path))
    assert caught.value.key == "backends.night.policy_actions.t.argv"
    with pytest.raises(ConfigError, match="NOT_SET_KEY") as caught:
        create(BackendSpec("night", "builtin", {"model": "m", "api_key_env": "NOT_SET_KEY"}, tmp_path))
    assert caught.value.key == "backends.night.api_key_env"


def test_backend_protocol_and_capabilities(tmp_path: Path) -> None:
    from onloop.backends.base import AgentBackend

    backend = create(BackendSpec("b", "builtin", {"model": "m", "base_url": "http://127.0.0.1:9/v1"}, tmp_path))
    assert isinstance(backend, BuiltinBackend) and isinstance(backend, AgentBackend)
    assert backend.capabilities.token_usage and backend.capabilities.cost and backend.capabilities.structured_events
