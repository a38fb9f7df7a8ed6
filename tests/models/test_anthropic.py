"""The Anthropic Messages model against the fake model server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from modelhelpers import NOW, FixedClock

from onloop.models import ModelConfig
from onloop.models.anthropic import AnthropicModel, to_anthropic_messages
from onloop.models.base import Message, ModelError, ModelRequest, ToolCall, ToolSpec
from onloop.testing.fake_model_server import FakeModelServer, Turn
from onloop.usage import CostSource, Usage

pytest.importorskip("anthropic", reason="the anthropic extra (onloop[anthropic]) is not installed")

READ = ToolSpec("read_file", "Read a file", {"type": "object", "properties": {"path": {"type": "string"}}})


def model_for(server: FakeModelServer, **extra: object) -> AnthropicModel:
    config = ModelConfig(provider="anthropic", model="claude-haiku-4-5", base_url=server.url, **extra)  # type: ignore[arg-type]
    return AnthropicModel(config, clock=FixedClock())


def ask(*messages: Message, **kwargs: object) -> ModelRequest:
    return ModelRequest(messages=messages or (Message("system", "be brief"), Message("user", "hi")), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("stream", [None, False])
def test_text_usage_and_cost(server: FakeModelServer, stream: bool | None) -> None:
    server.add(Turn(text="Hello from a fake Claude, streamed in pieces.", usage=Usage(1000, 500, 200)))
    response = model_for(server, stream=stream).complete(ask())
    assert response.text == "Hello from a fake Claude, streamed in pieces."
    assert response.usage == Usage(1000, 500, 200)
    assert response.cost.source is CostSource.PRICE_TABLE and response.cost.amount is not None
    assert response.cost.amount > Decimal(0)
    request = server.requests[0]
    assert request.path == "/v1/messages"
    assert request.body["system"] == "be brief"
    assert request.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert request.body.get("stream", False) is (stream is None)
    # This SDK generation sends the key as a bearer token (older ones used x-api-key).
    assert request.headers.get("authorization", request.headers.get("x-api-key", "")).endswith("onloop-no-key")


def test_tool_calls_and_tool_results(server: FakeModelServer) -> None:
    server.add(Turn(text="Let me look.", tool_calls=(ToolCall("toolu_1", "read_file", {"path": "a.py"}),)),
               Turn(text="done"))
    model = model_for(server)
    first = model.complete(ask(Message("user", "go"), tools=(READ,)))
    assert first.text == "Let me look."
    assert first.tool_calls == (ToolCall("toolu_1", "read_file", {"path": "a.py"}),)
    assert first.finish_reason == "tool_use"
    history = (Message("user", "go"), Message("assistant", first.text, tool_calls=first.tool_calls),
               Message("tool", "x = 1", tool_call_id="toolu_1"))
    assert model.complete(ask(*history, tools=(READ,))).text == "done"
    sent = server.requests[1].body
    assert sent["tools"] == [{"name": "read_file", "description": "Read a file", "input_schema": dict(READ.parameters)}]
    assert sent["messages"][1]["content"][1] == {"type": "tool_use", "id": "toolu_1", "name": "read_file",
                                                 "input": {"path": "a.py"}}
    assert sent["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "x = 1"}]}


def test_response_schema_uses_a_forced_tool(server: FakeModelServer) -> None:
    server.add(Turn(tool_calls=(ToolCall("toolu_9", "Verdict", {"verdict": "FAIL"}),)))
    schema = {"title": "Verdict", "type": "object", "properties": {"verdict": {"enum": ["PASS", "FAIL"]}}}
    response = model_for(server).complete(ask(response_schema=schema))
    assert json.loads(response.text) == {"verdict": "FAIL"} and response.tool_calls == ()
    assert server.requests[0].body["tool_choice"] == {"type": "tool", "name": "Verdict"}


def test_mid_conversation_system_message_and_merged_turns() -> None:
    system, turns = to_anthropic_messages([
        Message("system", "rules"), Message("user", "a"), Message("assistant", "b"),
        Message("system", "operator says: hurry"), Message("user", "c")])
    assert system == "rules"
    assert turns[-1] == {"role": "user", "content": [{"type": "text", "text": "[system note] operator says: hurry"},
                                                     {"type": "text", "text": "c"}]}


@pytest.mark.parametrize(("headers", "expected"), [
    ({"anthropic-ratelimit-requests-reset": "2026-11-22T12:01:00Z", "anthropic-ratelimit-requests-remaining": "0",
      "anthropic-ratelimit-tokens-reset": "2026-11-22T12:20:00Z"}, datetime(2026, 11, 22, 12, 1, tzinfo=UTC)),
    ({"retry-after": "42"}, NOW + timedelta(seconds=42)),
    ({"x-ratelimit-reset-requests": "2s"}, NOW + timedelta(seconds=2)),
])
def test_429_rate_limited(server: FakeModelServer, headers: dict[str, str], expected: datetime) -> None:
    server.add(Turn.rate_limited(headers))
    with pytest.raises(ModelError) as caught:
        model_for(server).complete(ask())
    assert caught.value.rate_limited and caught.value.reset_at == expected
    assert len(server.requests) == 1


def test_529_overloaded_is_not_a_rate_limit(server: FakeModelServer) -> None:
    server.add(Turn(status=529, error="Overloaded"))
    with pytest.raises(ModelError, match="529") as caught:
        model_for(server).complete(ask())
    assert not caught.value.rate_limited and caught.value.status == 529


def test_500_error(server: FakeModelServer) -> None:
    server.add(Turn.failure(500, "internal"))
    with pytest.raises(ModelError, match="HTTP 500") as caught:
        model_for(server).complete(ask())
    assert caught.value.status == 500


def test_slow_response_times_out(server: FakeModelServer) -> None:
    server.add(Turn(text="late", delay=3.0))
    with pytest.raises(ModelError, match=r"within 0\.5s"):
        model_for(server, timeout=0.5).complete(ask())
