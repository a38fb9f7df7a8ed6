"""Any OpenAI-compatible chat-completions endpoint through the `openai` SDK.

OpenAI, OpenRouter, Ollama, vLLM, a llama.cpp server, LM Studio or a LiteLLM proxy: only `base_url`
differs. Every call first asks `onloop.safety` whether the endpoint may be reached (tests: loopback only).

Non-streaming by default, because then usage is on every response from every server: llama.cpp's server,
for one, leaves usage out of streams even with `stream_options.include_usage`. Streaming (`stream = true`)
is there for endpoints behind proxies that cut idle connections during long generations; it asks for
the usage chunk and, if the server does not send one, the response carries zero tokens and an unknown
cost rather than an invented number.

The SDK's own retries are off (`max_retries=0`): onloop decides what a 429 means (see `_common`).
The API key is read from the environment variable the config names, handed to the SDK and never logged.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

from onloop.clock import Clock, SystemClock
from onloop.models._common import parse_arguments, schema_name, sdk_client, sdk_errors
from onloop.models.base import Message, ModelError, ModelRequest, ModelResponse, ToolCall
from onloop.models.config import ModelConfig
from onloop.models.pricing import compute_cost
from onloop.safety import ensure_model_endpoint_allowed
from onloop.usage import Cost, Usage


class OpenAICompatModel:
    """A `ChatModel` speaking OpenAI chat completions."""

    def __init__(self, config: ModelConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.name = config.model
        self.base_url = config.resolved_base_url()
        self._clock = clock or SystemClock()
        self._client: Any = None

    def complete(self, request: ModelRequest) -> ModelResponse:
        ensure_model_endpoint_allowed(self.base_url)
        import openai  # imported late: 0.5 s, and only the models that are used should pay it

        params = self._params(request)
        with sdk_errors(openai, "openai", self.base_url, self.config.timeout, self._clock):
            if self.config.stream:
                return self._streamed(params)
            return self._response(self._get_client().chat.completions.create(**params))

    def _get_client(self) -> Any:
        if self._client is None:
            import openai

            self._client = sdk_client(openai.OpenAI, self.config, self.base_url)
        return self._client

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.config.model,
            "messages": [to_openai_message(message) for message in request.messages],
            "max_tokens": request.max_tokens or self.config.max_tokens,
        }
        temperature = request.temperature if request.temperature is not None else self.config.temperature
        if temperature is not None:
            params["temperature"] = temperature
        if request.tools:
            params["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                                 "parameters": dict(t.parameters)}}
                               for t in request.tools]
        if request.response_schema is not None:
            schema = dict(request.response_schema)
            params["response_format"] = {"type": "json_schema", "json_schema": {
                "name": schema_name(schema), "schema": schema, "strict": False}}
        if self.config.stream:
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
        return params

    def _response(self, completion: Any) -> ModelResponse:
        choice = completion.choices[0] if completion.choices else None
        message = choice.message if choice is not None else None
        calls = tuple(parse_arguments(call.id, call.function.name, call.function.arguments)
                      for call in (getattr(message, "tool_calls", None) or ()))
        usage = usage_from_openai(completion.usage)
        return self._finish(text=(message.content or "") if message is not None else "", calls=calls,
                            usage=usage, reported=reported_cost(completion.usage),
                            model=completion.model or self.name,
                            finish_reason=(choice.finish_reason or "") if choice is not None else "")

    def _streamed(self, params: dict[str, Any]) -> ModelResponse:
        deadline = time.monotonic() + self.config.timeout
        stream = self._get_client().chat.completions.create(**params)
        state = _StreamState()
        with stream:
            for chunk in stream:
                state.add(chunk)
                if time.monotonic() > deadline:
                    raise ModelError(f"openai: stream from {self.base_url} exceeded {self.config.timeout:g}s")
        response = self._finish(text="".join(state.text), calls=state.tool_calls(), usage=state.usage,
                                reported=state.reported, model=state.model or self.name,
                                finish_reason=state.finish_reason)
        if not state.saw_usage:  # zero tokens would price as zero dollars: say "unknown" instead
            return replace(response, cost=Cost.unknown())
        return response

    def _finish(self, *, text: str, calls: tuple[ToolCall, ...], usage: Usage, reported: Decimal | None,
                model: str, finish_reason: str) -> ModelResponse:
        cost = compute_cost(self.config.model, usage, provider="openai", base_url=self.base_url,
                            prices=self.config.prices, reported=reported)
        return ModelResponse(text=text, tool_calls=calls, usage=usage, cost=cost, model=model,
                             finish_reason=finish_reason)


class _StreamState:
    """Accumulates chat-completion chunks: text pieces, tool calls by index, the usage chunk."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.usage = Usage()
        self.saw_usage = False
        self.reported: Decimal | None = None
        self.model = ""
        self.finish_reason = ""

    def add(self, chunk: Any) -> None:
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.saw_usage = True
            self.usage = usage_from_openai(chunk.usage)
            self.reported = reported_cost(chunk.usage)
        for choice in chunk.choices or ():
            self.finish_reason = choice.finish_reason or self.finish_reason
            delta = choice.delta
            if delta.content:
                self.text.append(delta.content)
            for call in delta.tool_calls or ():
                slot = self.calls.setdefault(call.index, {"id": "", "name": "", "arguments": []})
                slot["id"] = call.id or slot["id"]
                if call.function is not None:
                    slot["name"] = call.function.name or slot["name"]
                    slot["arguments"].append(call.function.arguments or "")

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(parse_arguments(slot["id"], slot["name"], "".join(slot["arguments"]))
                     for _, slot in sorted(self.calls.items()))


def to_openai_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {"role": "assistant", "content": message.content or None,
                "tool_calls": [{"id": call.id, "type": "function",
                                "function": {"name": call.name, "arguments": _arguments_text(call)}}
                               for call in message.tool_calls]}
    return {"role": message.role, "content": message.content}


def _arguments_text(call: ToolCall) -> str:
    return call.invalid_arguments if call.invalid_arguments is not None else json.dumps(dict(call.arguments))


def usage_from_openai(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) or 0
    return Usage(input_tokens=usage.prompt_tokens or 0, output_tokens=usage.completion_tokens or 0,
                 cached_input_tokens=cached)


def reported_cost(usage: Any) -> Decimal | None:
    """OpenRouter's `usage.cost` (USD), when the provider reports one."""
    value = getattr(usage, "cost", None) if usage is not None else None
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return Decimal(str(value))
        except ArithmeticError:
            return None
    return None


def create(config: ModelConfig) -> OpenAICompatModel:
    return OpenAICompatModel(config)


