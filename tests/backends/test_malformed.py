"""Malformed CLI output: validated at the boundary, counted and skipped, never an exception.

The property test takes every real JSON transcript in tests/data/agent-cli, replaces one field of one
line (at any depth) with an arbitrary JSON value (NaN and infinities included, as Python's json module
reads them) and feeds the result to the adapter's parser: it must always finish with an AgentResult.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from backendhelpers import DATA, StubClock, finish_lines, fixture_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onloop.backends._cli import StreamParser
from onloop.backends.base import AgentResult, AgentStatus
from onloop.backends.claude_code import ClaudeStreamParser
from onloop.backends.codex import CodexBackend, CodexOptions
from onloop.backends.command import CommandBackend, CommandOptions
from onloop.backends.opencode import OpencodeBackend, OpencodeOptions
from onloop.usage import CostSource, Usage

COMMAND_TRANSCRIPT = [
    json.dumps({"type": "message", "text": "I fixed add()."}),
    json.dumps({"type": "tool_call", "name": "edit", "input": {"path": "calc.py"}}),
    json.dumps({"type": "usage", "input_tokens": 1200, "output_tokens": 300, "cost_usd": "0.0125"}),
    json.dumps({"type": "error", "message": "a warning"}),
    json.dumps({"type": "result", "text": "Done.", "status": "ok", "session_id": "abc", "model": "gpt-4o"}),
]


CODEX = CodexBackend("cx", CodexOptions(model="gpt-5.5", codex_home="/var/lib/onloop-tests/unused"), clock=StubClock())
OPENCODE = OpencodeBackend("oc", OpencodeOptions(model="openai/gpt-4o"), clock=StubClock())
COMMAND = CommandBackend("cmd", CommandOptions(command=["x"], output="jsonl"), clock=StubClock())


def claude_parser() -> StreamParser:
    return ClaudeStreamParser(clock=StubClock())


def codex_parser() -> StreamParser:
    return CODEX.parser()


def opencode_parser() -> StreamParser:
    return OPENCODE.parser()


def command_parser() -> StreamParser:
    return COMMAND.parser()


PARSERS: dict[str, Callable[[], StreamParser]] = {
    "claude": claude_parser, "codex": codex_parser, "opencode": opencode_parser, "command": command_parser}


def transcripts() -> list[tuple[str, list[str]]]:
    found = [(path.name.split("-")[0], path.read_text().splitlines())
             for path in sorted(DATA.glob("*.json*")) if not path.name.endswith(".meta.json")]
    return [(kind, lines) for kind, lines in found if kind in PARSERS] + [("command", COMMAND_TRANSCRIPT)]


TRANSCRIPTS = transcripts()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value that can be replaced: object keys and list indexes, at any depth."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


@settings(max_examples=int(os.environ.get("ONLOOP_MUTATION_EXAMPLES", "400")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_real_transcripts_never_raise(data: st.DataObject) -> None:
    kind, lines = data.draw(st.sampled_from(TRANSCRIPTS), label="transcript")
    mutated = list(lines)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        index = data.draw(st.integers(0, len(mutated) - 1), label="line")
        obj = json.loads(mutated[index])
        where = data.draw(st.sampled_from(paths(obj)), label="field")
        mutated[index] = json.dumps(replaced(obj, where, data.draw(json_values, label="value")))
    for exit_code in (0, 1):
        result = finish_lines(PARSERS[kind](), mutated, exit_code)
        assert isinstance(result, AgentResult)
        assert result.malformed_events >= 0
        amount = result.cost.amount
        assert amount is None or (amount.is_finite() and amount >= 0)
        assert result.usage.input_tokens >= 0 and result.usage.output_tokens >= 0


def test_every_json_adapter_has_a_real_transcript_in_the_property_test() -> None:
    assert {kind for kind, _ in TRANSCRIPTS} == set(PARSERS)


def with_result(name: str, **changes: Any) -> list[str]:
    lines = fixture_path(name).read_text().splitlines()
    result = json.loads(lines[-1])
    result.update(changes)
    return [*lines[:-1], json.dumps(result)]


@pytest.mark.parametrize("cost", [math.nan, math.inf, "abc", [1], {"usd": 1}, -0.5, True])
def test_a_malformed_cost_is_unknown_and_counted(cost: object) -> None:
    result = finish_lines(ClaudeStreamParser(), with_result("claude-success.jsonl", total_cost_usd=cost))
    assert result.status is AgentStatus.OK
    assert result.cost.source is CostSource.UNKNOWN and result.cost.amount is None
    assert result.malformed_events == 1
    assert result.usage == Usage(7200, 220)  # the rest of the result still counts


def test_a_nan_cost_written_as_json_nan_is_unknown() -> None:
    lines = with_result("claude-success.jsonl")
    lines[-1] = lines[-1].replace('"total_cost_usd":0.041499999999999995', '"total_cost_usd":NaN')
    lines[-1] = json.dumps({**json.loads(lines[-1]), "total_cost_usd": float("nan")})
    assert "NaN" in lines[-1]
    assert finish_lines(ClaudeStreamParser(), lines).cost.source is CostSource.UNKNOWN


def test_string_tokens_are_malformed_and_fall_back_to_the_streamed_usage() -> None:
    lines = with_result("claude-success.jsonl", usage={"input_tokens": "abc", "output_tokens": 220})
    result = finish_lines(ClaudeStreamParser(), lines)
    assert result.status is AgentStatus.OK and result.malformed_events == 1
    assert result.usage == Usage(1500 + 1700 + 1900 + 2100, 4)  # the assistant messages' own usage


def test_strings_where_objects_belong_and_null_where_a_dict_belongs() -> None:
    lines = fixture_path("claude-success.jsonl").read_text().splitlines()
    assistant = json.loads(lines[1])
    assistant["message"]["content"] = ["just", "strings"]
    nulled = json.loads(lines[2])
    nulled["message"] = None
    result = finish_lines(ClaudeStreamParser(), [lines[0], json.dumps(assistant), json.dumps(nulled), *lines[3:]])
    assert result.status is AgentStatus.OK and result.malformed_events == 2
    assert result.events == 13 - 2  # one text and one tool call fewer


def test_codex_malformed_usage_and_items_are_counted() -> None:
    lines = fixture_path("codex-success.jsonl").read_text().splitlines()
    mutated = []
    for line in lines:
        obj = json.loads(line)
        if obj["type"] == "turn.completed":
            obj["usage"]["input_tokens"] = "abc"
        if obj["type"] == "item.completed" and obj["item"]["type"] == "command_execution":
            obj["item"]["exit_code"] = "zero"
        mutated.append(json.dumps(obj))
    result = finish_lines(codex_parser(), mutated)
    assert result.status is AgentStatus.OK  # the turn completed, its usage was garbage
    assert result.malformed_events == 1 + 2  # the usage block, two command items
    assert result.usage == Usage()


def test_opencode_malformed_cost_makes_the_run_cost_unknown() -> None:
    lines = fixture_path("opencode-success.jsonl").read_text().splitlines()
    finish = max(i for i, line in enumerate(lines) if '"step_finish"' in line)
    obj = json.loads(lines[finish])
    obj["part"]["cost"] = float("nan")
    lines[finish] = json.dumps(obj)
    result = finish_lines(opencode_parser(), lines)
    assert result.status is AgentStatus.OK and result.malformed_events == 1
    assert result.cost.source is CostSource.UNKNOWN


def test_command_malformed_lines_are_skipped() -> None:
    lines = [json.dumps({"type": "usage", "input_tokens": [1, 2], "output_tokens": 5}),
             json.dumps({"type": "usage", "input_tokens": 10, "output_tokens": 5, "cost_usd": "lots"}),
             *COMMAND_TRANSCRIPT]
    result = finish_lines(command_parser(), lines)
    assert result.status is AgentStatus.OK
    assert result.malformed_events == 2 and result.usage == Usage(1210, 305)
    assert result.cost.source is CostSource.UNKNOWN
    assert finish_lines(command_parser(), COMMAND_TRANSCRIPT).cost.amount == Decimal("0.0125")
