"""The chat model protocol: what the built-in agent, memory consolidation and the council talk to.

A model speaks one wire API (OpenAI chat-completions, Anthropic Messages, or in-process llama.cpp);
the provider (base URL, key) is configuration. The protocol is deliberately small: one request in,
one complete response out (streaming is the implementation's business), with usage on every response.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from onloop.usage import Cost, Usage


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: Mapping[str, Any]  # JSON schema of the arguments


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: Mapping[str, Any]
    # The raw text when the model's arguments were not a JSON object; `arguments` is then empty and the
    # agent answers the model with an error instead of guessing.
    invalid_arguments: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # for role == "tool"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ModelRequest:
    messages: Sequence[Message]
    tools: Sequence[ToolSpec] = ()
    response_schema: Mapping[str, Any] | None = None  # structured output: a JSON schema
    max_tokens: int | None = None
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class ModelResponse:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    cost: Cost = field(default_factory=Cost.unknown)
    model: str = ""
    finish_reason: str = ""


class ModelError(Exception):
    """A model call failed. `rate_limited` with `reset_at` when the provider said when to retry."""

    def __init__(self, message: str, *, rate_limited: bool = False, reset_at: datetime | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.rate_limited = rate_limited
        self.reset_at = reset_at
        self.status = status


class ChatModel(Protocol):
    name: str  # the model's id as the provider knows it

    def complete(self, request: ModelRequest) -> ModelResponse:
        """One call; raises ModelError (rate_limited=True for 429s and usage limits)."""
        ...
