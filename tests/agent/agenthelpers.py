"""Helpers shared by the built-in agent tests."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from onloop.backends.base import AgentEvent, AgentRequest
from onloop.models.base import ModelResponse, ToolCall
from onloop.process import NoSandbox
from onloop.usage import Cost, CostSource, Usage


def make_request(worktree: Path, tmp: Path, events: list[AgentEvent] | None = None, **extra: Any) -> AgentRequest:
    scratch = tmp / "scratch"
    scratch.mkdir(exist_ok=True)
    fields: dict[str, Any] = {"prompt": "Fix the bug.", "worktree": worktree, "log_path": tmp / "agent.jsonl",
                              "scratch_dir": scratch, "sandbox": NoSandbox(), "timeout": 120.0,
                              "on_event": events.append if events is not None else None}
    fields.update(extra)
    return AgentRequest(**fields)


def call(tool: str, call_id: str = "", /, **arguments: Any) -> ToolCall:
    return ToolCall(call_id or f"call_{tool}", tool, arguments)


def tools(*calls: ToolCall, cost: str | None = None) -> ModelResponse:
    return ModelResponse(text="", tool_calls=calls, usage=Usage(100, 10), cost=_cost(cost), model="scripted")


def answer(text: str, cost: str | None = None) -> ModelResponse:
    return ModelResponse(text=text, usage=Usage(50, 5), cost=_cost(cost), model="scripted")


def _cost(amount: str | None) -> Cost:
    return Cost(Decimal(amount), CostSource.PRICE_TABLE) if amount is not None else Cost.zero()


def kinds(events: list[AgentEvent]) -> list[str]:
    return [event.kind for event in events]


def guardrails(events: list[AgentEvent]) -> list[Mapping[str, Any]]:
    return [event.data for event in events if event.kind == "error" and "guardrail" in event.data]
