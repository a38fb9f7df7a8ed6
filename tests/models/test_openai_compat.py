"""The OpenAI-compatible model against the fake model server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from modelhelpers import NOW, FixedClock

from onloop.models import ModelConfig, create_model
from onloop.models.base import Message, ModelError, ModelRequest, ToolCall, ToolSpec
from onloop.models.config import Prices
from onloop.models.openai_compat import OpenAICompatModel
from onloop.safety import RealCallBlocked
from onloop.testing.fake_model_server import FakeModelServer, Turn
from onloop.usage import CostSource, Usage

READ = ToolSpec("read_file", "Read a file", {"type": "object", "properties": {"path": {"type": "string"}}})


def model_for(server: FakeModelServer, **extra: object) -> OpenAICompatModel:
    config = ModelConfig(provider="openai", model="gpt-4o", base_url=server.openai_base_url, **extra)  # type: ignore[arg-type]
    return OpenAICompatModel(config, clock=FixedClock())


def ask(text: str = "hi", **kwargs: object) -> ModelRequest:
    return ModelRequest(messages=(Message("system", "be brief"), Message("user", text)), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("stream", [False, True])
def test_text_and_usage_and_price_table_cost(server: FakeModelServer, stream: bool) -> None:
    server.add(Turn(text="Hello there, this is a longer answer.", usage=Usage(1000, 500, 200)))
    response = model_for(server, stream=stream).complete(ask())
    assert response.text == "Hello there, this is a longer answer."
    assert response.usage == Usage(1000, 500, 200)
    assert response.cost.source is CostSource.PRICE_TABLE
    assert response.cost.amount == Decimal("0.00725")  # gpt-4o: 800*2.5 + 200*1.25 + 500*10 per million
    body = server.requests[0].body
    assert body["model"] == "gpt-4o"
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body.get("stream", False) is stream
    if stream:
        assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_round_trip(server: FakeModelServer, stream: bool) -> None:
    server.add(Turn(tool_calls=(ToolCall("call_a", "read_file", {"path": "src/app.py"}),
                                ToolCall("call_b", "read_file", {"path": "README.md"}))),
               Turn(text="done"))
    model = model_for(server, stream=stream)
    first = model.complete(ask(tools=(READ,)))
    assert first.tool_calls == (ToolCall("call_a", "read_file", {"path": "src/app.py"}),
                                ToolCall("call_b", "read_file", {"path": "README.md"}))
    assert first.finish_reason == "tool_calls"
    history = (Message("user", "go"), Message("assistant", "", tool_calls=first.tool_calls),
               Message("tool", "print('hi')", tool_call_id="call_a"),
               Message("tool", "# readme", tool_call_id="call_b"))
    assert model.complete(ModelRequest(messages=history, tools=(READ,))).text == "done"
    sent = server.requests[1].body
    assert sent["tools"][0]["function"]["name"] == "read_file"
    assert sent["messages"][1]["tool_calls"][0]["function"] == {"name": "read_file",
                                                                 "arguments": json.dumps({"path": "src/app.py"})}
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_a", "content": "print('hi')"}


def test_stream_without_usage_chunk_has_unknown_cost(server: FakeModelServer) -> None:
    server.add(Turn(text="no usage here", stream_usage=False))
    response = model_for(server, stream=True).complete(ask())
    assert response.text == "no usage here"
    assert response.usage == Usage() and response.cost.source is CostSource.UNKNOWN


def test_invalid_tool_arguments_are_kept_not_guessed(server: FakeModelServer) -> None:
    raw = {"id": "x", "object": "chat.completion", "created": 0, "model": "gpt-4o",
           "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None,
                        "tool_calls": [{"id": "c1", "type": "function",
                                        "function": {"name": "read_file", "arguments": "{not json"}}]}}],
           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    server.add(Turn(raw_body=raw))
    (call,) = model_for(server).complete(ask()).tool_calls
    assert call.name == "read_file" and call.arguments == {}
    assert call.invalid_arguments == "{not json"


def test_response_schema_is_sent_as_json_schema(server: FakeModelServer) -> None:
    server.add(Turn(text='{"verdict": "PASS"}'))
    schema = {"title": "Verdict", "type": "object", "properties": {"verdict": {"enum": ["PASS", "FAIL"]}}}
    response = model_for(server, temperature=0.2, max_tokens=77).complete(ask(response_schema=schema))
    assert json.loads(response.text) == {"verdict": "PASS"}
    body = server.requests[0].body
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "Verdict", "schema": schema, "strict": False}}
    assert body["temperature"] == 0.2 and body["max_tokens"] == 77


def test_reported_cost_wins(server: FakeModelServer) -> None:
    server.add(Turn(text="ok", usage=Usage(100, 10), reported_cost=Decimal("0.0123")))
    response = model_for(server, prices=Prices(input=Decimal(1), output=Decimal(1))).complete(ask())
    assert response.cost.source is CostSource.REPORTED
    assert response.cost.amount == Decimal("0.0123")


def test_price_override_and_unknown_model(server: FakeModelServer) -> None:
    server.add(Turn(text="a", usage=Usage(2_000_000, 1_000_000)), Turn(text="b"))
    priced = model_for(server, prices=Prices(input=Decimal("0.5"), output=Decimal("2"))).complete(ask())
    assert priced.cost.amount == Decimal("3") and priced.cost.source is CostSource.PRICE_TABLE
    config = ModelConfig(model="my-own-finetune-xyz", base_url=server.openai_base_url)
    assert create_model(config).complete(ask()).cost.source is CostSource.UNKNOWN


def test_api_key_from_named_env_var_is_sent_and_never_in_errors(server: FakeModelServer,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-secret-123")
    server.add(Turn(text="ok"), Turn.failure(500, "boom"))
    model = model_for(server, api_key_env="MY_KEY")
    model.complete(ask())
    assert server.requests[0].headers["authorization"] == "Bearer sk-secret-123"
    with pytest.raises(ModelError) as caught:
        model.complete(ask())
    assert "sk-secret" not in str(caught.value)


def test_missing_key_env_is_a_config_error(server: FakeModelServer) -> None:
    from onloop.errors import ConfigError

    with pytest.raises(ConfigError, match="NOPE_NOT_SET") as caught:
        model_for(server, api_key_env="NOPE_NOT_SET").complete(ask())
    assert caught.value.key == "api_key_env"
    assert server.requests == []


RESET_CASES = [
    ({"retry-after": "20"}, NOW + timedelta(seconds=20)),
    ({"retry-after": "Sun, 22 Nov 2026 12:07:00 GMT"}, datetime(2026, 11, 22, 12, 7, tzinfo=UTC)),
    ({"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-remaining-requests": "0",
      "x-ratelimit-reset-tokens": "1s", "x-ratelimit-remaining-tokens": "9000"}, NOW + timedelta(minutes=6)),
    ({"x-ratelimit-reset-tokens": "1s"}, NOW + timedelta(seconds=1)),
    ({"anthropic-ratelimit-tokens-reset": "2026-11-22T12:30:00Z"}, datetime(2026, 11, 22, 12, 30, tzinfo=UTC)),
]


@pytest.mark.parametrize(("headers", "expected"), RESET_CASES)
def test_429_is_rate_limited_with_reset(server: FakeModelServer, headers: dict[str, str],
                                        expected: datetime) -> None:
    server.add(Turn.rate_limited(headers))
    with pytest.raises(ModelError) as caught:
        model_for(server).complete(ask())
    assert caught.value.rate_limited and caught.value.status == 429
    assert caught.value.reset_at == expected
    assert len(server.requests) == 1  # the SDK's own retries are off: onloop decides


def test_429_reset_from_message(server: FakeModelServer) -> None:
    server.add(Turn.rate_limited({}, message="Rate limit reached for gpt-4o. Please try again in 1m30s."))
    with pytest.raises(ModelError) as caught:
        model_for(server).complete(ask())
    assert caught.value.reset_at == NOW + timedelta(seconds=90)


def test_insufficient_quota_is_not_a_rate_limit(server: FakeModelServer) -> None:
    server.add(Turn(status=429, error={"error": {"message": "You exceeded your current quota",
                                                 "type": "insufficient_quota", "code": "insufficient_quota"}}))
    with pytest.raises(ModelError) as caught:
        model_for(server).complete(ask())
    assert not caught.value.rate_limited and caught.value.status == 429
    assert "quota" in str(caught.value)


def test_server_error(server: FakeModelServer) -> None:
    server.add(Turn.failure(500, "the GPU caught fire"))
    with pytest.raises(ModelError, match=r"HTTP 500.*the GPU caught fire") as caught:
        model_for(server).complete(ask())
    assert caught.value.status == 500 and not caught.value.rate_limited
    assert len(server.requests) == 1


def test_slow_response_times_out(server: FakeModelServer) -> None:
    server.add(Turn(text="too late", delay=3.0))
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"within 0\.5s"):
        model_for(server, timeout=0.5).complete(ask())
    assert time.monotonic() - started < 2.5


def test_non_loopback_endpoint_is_blocked_in_tests() -> None:
    model = create_model(ModelConfig(model="gpt-4o", api_key_env="HOME"))
    with pytest.raises(RealCallBlocked):
        model.complete(ask())
