"""The three wire formats the fake model server speaks, as pure functions of a scripted turn.

Each format has a JSON body (non-streaming) and a sequence of server-sent events (streaming). The event
shapes follow what the official SDKs parse (and what Codex and Claude Code send and expect), checked by
tests that read them back through the `openai` and `anthropic` SDKs themselves.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onloop.testing.fake_model_server import Turn

SseEvent = tuple[str | None, Any]  # (event name or None, data: a JSON-able object or a raw string)
_CREATED = 1_700_000_000


def sse(event: str | None, data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def chunks(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _arguments(call_arguments: Mapping[str, Any]) -> str:
    return json.dumps(dict(call_arguments), separators=(",", ":"))


# --- OpenAI chat completions -------------------------------------------------------------------


def chat_usage(turn: Turn) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": turn.usage.input_tokens,
        "completion_tokens": turn.usage.output_tokens,
        "total_tokens": turn.usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": turn.usage.cached_input_tokens},
    }
    if turn.reported_cost is not None:
        usage["cost"] = float(turn.reported_cost)  # OpenRouter reports a JSON number
    return usage


def chat_finish_reason(turn: Turn) -> str:
    return turn.finish_reason or ("tool_calls" if turn.tool_calls else "stop")


def chat_json(turn: Turn, model: str, response_id: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
    if turn.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _arguments(c.arguments)}}
            for c in turn.tool_calls
        ]
    return {
        "id": response_id, "object": "chat.completion", "created": _CREATED, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": chat_finish_reason(turn)}],
        "usage": chat_usage(turn),
    }


def chat_events(turn: Turn, model: str, response_id: str, include_usage: bool) -> Iterator[SseEvent]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": response_id, "object": "chat.completion.chunk", "created": _CREATED, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield None, chunk({"role": "assistant", "content": ""})
    for piece in chunks(turn.text, turn.chunk_chars):
        yield None, chunk({"content": piece})
    for index, call in enumerate(turn.tool_calls):
        head = {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        yield None, chunk({"tool_calls": [head]})
        for piece in chunks(_arguments(call.arguments), turn.chunk_chars):
            yield None, chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield None, chunk({}, chat_finish_reason(turn))
    if include_usage and turn.stream_usage:
        yield None, {"id": response_id, "object": "chat.completion.chunk", "created": _CREATED, "model": model,
                     "choices": [], "usage": chat_usage(turn)}
    yield None, "[DONE]"


# --- OpenAI Responses API ----------------------------------------------------------------------


def _responses_items(turn: Turn, response_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if turn.text:
        items.append({"type": "message", "id": f"msg_{response_id}", "role": "assistant", "status": "completed",
                      "content": [{"type": "output_text", "text": turn.text, "annotations": []}]})
    for call in turn.tool_calls:
        items.append({"type": "function_call", "id": f"fc_{call.id}", "call_id": call.id, "name": call.name,
                      "arguments": _arguments(call.arguments), "status": "completed"})
    return items


def responses_json(turn: Turn, model: str, response_id: str, status: str = "completed") -> dict[str, Any]:
    done = status == "completed"
    return {
        "id": response_id, "object": "response", "created_at": _CREATED, "model": model, "status": status,
        "output": _responses_items(turn, response_id) if done else [],
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
        "usage": {
            "input_tokens": turn.usage.input_tokens, "output_tokens": turn.usage.output_tokens,
            "total_tokens": turn.usage.total_tokens,
            "input_tokens_details": {"cached_tokens": turn.usage.cached_input_tokens},
            "output_tokens_details": {"reasoning_tokens": 0},
        } if done else None,
    }


def responses_events(turn: Turn, model: str, response_id: str) -> Iterator[SseEvent]:
    sequence = itertools.count()

    def event(kind: str, **fields: Any) -> SseEvent:
        return kind, {"type": kind, "sequence_number": next(sequence), **fields}

    yield event("response.created", response=responses_json(turn, model, response_id, "in_progress"))
    for index, item in enumerate(_responses_items(turn, response_id)):
        yield from _responses_item_events(event, index, item, turn.chunk_chars)
    yield event("response.completed", response=responses_json(turn, model, response_id))


def _responses_item_events(event: Any, index: int, item: dict[str, Any], size: int) -> Iterator[SseEvent]:
    if item["type"] == "message":
        text = item["content"][0]["text"]
        yield event("response.output_item.added", output_index=index, item={**item, "content": [],
                                                                            "status": "in_progress"})
        part = {"type": "output_text", "text": "", "annotations": []}
        yield event("response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=part)
        for piece in chunks(text, size):
            yield event("response.output_text.delta", item_id=item["id"], output_index=index, content_index=0,
                        delta=piece, logprobs=[])
        yield event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0,
                    text=text, logprobs=[])
        yield event("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
                    part={**part, "text": text})
    else:
        yield event("response.output_item.added", output_index=index,
                    item={**item, "arguments": "", "status": "in_progress"})
        for piece in chunks(item["arguments"], size):
            yield event("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                        delta=piece)
        yield event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                    arguments=item["arguments"], name=item["name"])
    yield event("response.output_item.done", output_index=index, item=item)


# --- Anthropic Messages ------------------------------------------------------------------------


def messages_usage(turn: Turn) -> dict[str, Any]:
    # Anthropic counts cache reads apart from input_tokens; onloop's Usage counts them in.
    cached = min(turn.usage.cached_input_tokens, turn.usage.input_tokens)
    return {"input_tokens": turn.usage.input_tokens - cached, "output_tokens": turn.usage.output_tokens,
            "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}


def messages_stop_reason(turn: Turn) -> str:
    return turn.finish_reason or ("tool_use" if turn.tool_calls else "end_turn")


def _messages_blocks(turn: Turn) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "text", "text": turn.text}] if turn.text else []
    blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": dict(c.arguments)}
               for c in turn.tool_calls]
    return blocks


def messages_json(turn: Turn, model: str, response_id: str) -> dict[str, Any]:
    return {"id": response_id, "type": "message", "role": "assistant", "model": model,
            "content": _messages_blocks(turn), "stop_reason": messages_stop_reason(turn),
            "stop_sequence": None, "usage": messages_usage(turn)}


def messages_events(turn: Turn, model: str, response_id: str) -> Iterator[SseEvent]:
    start = {**messages_json(turn, model, response_id), "content": [], "stop_reason": None,
             "usage": {**messages_usage(turn), "output_tokens": 1}}
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(_messages_blocks(turn)):
        yield from _messages_block_events(index, block, turn.chunk_chars)
    yield "message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": messages_stop_reason(turn), "stop_sequence": None},
                            "usage": {"output_tokens": turn.usage.output_tokens}}
    yield "message_stop", {"type": "message_stop"}


def _messages_block_events(index: int, block: dict[str, Any], size: int) -> Iterator[SseEvent]:
    if block["type"] == "text":
        yield "content_block_start", {"type": "content_block_start", "index": index,
                                      "content_block": {"type": "text", "text": ""}}
        for piece in chunks(block["text"], size):
            yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                          "delta": {"type": "text_delta", "text": piece}}
    else:
        yield "content_block_start", {"type": "content_block_start", "index": index,
                                      "content_block": {**block, "input": {}}}
        for piece in chunks(json.dumps(block["input"], separators=(",", ":")), size):
            yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                          "delta": {"type": "input_json_delta", "partial_json": piece}}
    yield "content_block_stop", {"type": "content_block_stop", "index": index}


# --- errors ------------------------------------------------------------------------------------

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


def error_body(wire: str, status: int, message: str) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error")
    if wire == "anthropic":
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "code": None, "param": None}}
