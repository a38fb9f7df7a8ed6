"""Anthropic's Messages API through the `anthropic` SDK (the optional extra `onloop[anthropic]`).

The SDK is imported only when a call is made, so the core install does not need it; without it the
error says which extra to install.

Streaming by default: the SDK refuses non-streaming calls whose `max_tokens` could run past ten minutes,
and Anthropic's stream always carries usage (`message_start` and `message_delta`).

Mapping onloop's neutral messages onto the Messages API:
- leading system messages become the `system` parameter; a system message later in the conversation is
  sent as a user text block marked as a system note (the public API has no mid-conversation system role);
- tool results become `tool_result` blocks in a user turn; consecutive turns of one role are merged;
- `response_schema` is served by a forced tool whose input schema is the response schema (the reliable
  way to get schema-shaped JSON from every Claude model); its input comes back as JSON text.
- input tokens include cache reads and cache writes (`Usage.input_tokens` counts all input).
"""

from __future__ import annotations

import json
import time
from typing import Any

from onloop.clock import Clock, SystemClock
from onloop.errors import ConfigError
from onloop.models._common import schema_name, sdk_client, sdk_errors
from onloop.models.base import Message, ModelError, ModelRequest, ModelResponse, ToolCall
from onloop.models.config import ModelConfig
from onloop.models.pricing import compute_cost
from onloop.safety import ensure_model_endpoint_allowed
from onloop.usage import Usage


def _sdk() -> Any:
    try:
        import anthropic
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "the anthropic provider needs the anthropic SDK: pip install 'onloop[anthropic]'",
            key="provider",
        ) from exc
    return anthropic


class AnthropicModel:
    """A `ChatModel` speaking Anthropic Messages."""

    def __init__(self, config: ModelConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.name = config.model
        self.base_url = config.resolved_base_url()
        self._clock = clock or SystemClock()
        self._client: Any = None

    def complete(self, request: ModelRequest) -> ModelResponse:
        ensure_model_endpoint_allowed(self.base_url)
        sdk = _sdk()
        params = self._params(request)
        with sdk_errors(sdk, "anthropic", self.base_url, self.config.timeout, self._clock):
            if self.config.stream is False:
                message = self._get_client().messages.create(**params)
            else:
                message = self._streamed(params)
        return self._response(message, forced_schema=request.response_schema is not None)

    def _get_client(self) -> Any:
        if self._client is None:
            self._client = sdk_client(_sdk().Anthropic, self.config, self.base_url)
        return self._client

    def _streamed(self, params: dict[str, Any]) -> Any:
        deadline = time.monotonic() + self.config.timeout
        with self._get_client().messages.stream(**params) as stream:
            for _event in stream:
                if time.monotonic() > deadline:
                    raise ModelError(f"anthropic: stream from {self.base_url} exceeded {self.config.timeout:g}s")
            return stream.get_final_message()

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        system, messages = to_anthropic_messages(request.messages)
        params: dict[str, Any] = {"model": self.config.model, "messages": messages,
                                  "max_tokens": request.max_tokens or self.config.max_tokens}
        if system:
            params["system"] = system
        temperature = request.temperature if request.temperature is not None else self.config.temperature
        if temperature is not None:
            params["temperature"] = min(temperature, 1.0)  # Anthropic's range is 0..1
        tools = [{"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
                 for t in request.tools]
        if request.response_schema is not None:
            name = schema_name(request.response_schema)
            tools = [{"name": name, "description": "Give the final answer in this shape.",
                      "input_schema": dict(request.response_schema)}]
            params["tool_choice"] = {"type": "tool", "name": name}
        if tools:
            params["tools"] = tools
        return params

    def _response(self, message: Any, *, forced_schema: bool) -> ModelResponse:
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in message.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                calls.append(ToolCall(block.id, block.name, dict(block.input or {})))
        if forced_schema:
            texts = [json.dumps(calls[0].arguments)] if calls else texts
            calls = []
        usage = usage_from_anthropic(message.usage)
        cost = compute_cost(self.config.model, usage, provider="anthropic", base_url=self.base_url,
                            prices=self.config.prices)
        return ModelResponse(text="".join(texts), tool_calls=tuple(calls), usage=usage, cost=cost,
                             model=message.model or self.name, finish_reason=message.stop_reason or "")


def to_anthropic_messages(messages: Any) -> tuple[str, list[dict[str, Any]]]:
    """(system text, Messages API turns) from onloop's neutral messages."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system" and not turns:
            system.append(message.content)
            continue
        role, blocks = _blocks(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(system), turns


def _blocks(message: Message) -> tuple[str, list[dict[str, Any]]]:
    if message.role == "tool":
        return "user", [{"type": "tool_result", "tool_use_id": message.tool_call_id or "",
                         "content": message.content}]
    if message.role == "system":
        return "user", [{"type": "text", "text": f"[system note] {message.content}"}]
    blocks: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    if message.role == "assistant":
        blocks += [{"type": "tool_use", "id": call.id, "name": call.name, "input": dict(call.arguments)}
                   for call in message.tool_calls]
    return message.role, blocks or [{"type": "text", "text": "(empty)"}]


def usage_from_anthropic(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    cache_read = getattr(usage, "cache_read_input_tokens", None) or 0
    cache_write = getattr(usage, "cache_creation_input_tokens", None) or 0
    return Usage(input_tokens=(usage.input_tokens or 0) + cache_read + cache_write,
                 output_tokens=usage.output_tokens or 0, cached_input_tokens=cache_read)


def create(config: ModelConfig) -> AnthropicModel:
    return AnthropicModel(config)
