"""Fixtures for memory tests: a real SQLite store, a frozen clock, a scripted model, a real git repo."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import onloop.memory.schema  # noqa: F401 - registers the memory migration before the store opens
from onloop.memory.repo import MemoryRepo
from onloop.models.base import ModelRequest, ModelResponse, ToolCall
from onloop.store.db import Database


class FrozenClock:
    """2026-01-07 UTC until told otherwise; `sleep` advances time and is recorded, never blocks."""

    def __init__(self, start: datetime = datetime(2026, 1, 7, 9, 0, tzinfo=UTC)) -> None:
        self.current = start
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.current

    def monotonic(self) -> float:
        return self.current.timestamp()

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.current += timedelta(seconds=seconds)

    def advance(self, **kwargs: float) -> None:
        self.current += timedelta(**kwargs)


Step = ModelResponse | BaseException | Callable[[ModelRequest], ModelResponse]


@dataclass
class FakeLLM:
    """A FIFO of scripted responses or exceptions; records every request; `match` picks by regex."""

    steps: list[Step] = field(default_factory=list)
    matches: list[tuple[re.Pattern[str], Step]] = field(default_factory=list)
    calls: list[ModelRequest] = field(default_factory=list)
    name: str = "fake-llm"

    def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls.append(request)
        prompt = "\n".join(m.content for m in request.messages)
        for pattern, step in self.matches:
            if pattern.search(prompt):
                return self._play(step, request)
        if not self.steps:
            raise AssertionError("FakeLLM: no scripted response left")
        return self._play(self.steps.pop(0), request)

    @staticmethod
    def _play(step: Step, request: ModelRequest) -> ModelResponse:
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, ModelResponse):
            return step
        return step(request)

    def assert_complete(self) -> None:
        assert not self.steps, f"{len(self.steps)} scripted responses were never used"


def text(value: str) -> ModelResponse:
    return ModelResponse(text=value)


def ops(*items: dict[str, Any]) -> ModelResponse:
    return ModelResponse(text=json.dumps({"ops": list(items)}))


def tool_call(call_id: str, **arguments: Any) -> ModelResponse:
    return ModelResponse(text="", tool_calls=(ToolCall(call_id, "save_memory_note", arguments),))


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "state" / "onloop.db")
    yield database
    database.close()


@pytest.fixture
def repo(db: Database, clock: FrozenClock) -> MemoryRepo:
    return MemoryRepo(db, clock)


@pytest.fixture
def workspace(make_repo: Callable[..., Path]) -> Path:
    return make_repo({"pyproject.toml": "[project]\nname = 'demo'\n", "uv.lock": "", "src/demo/__init__.py": ""})


def session(repo: MemoryRepo, session_id: str = "run-1", project_id: str = "p_test") -> str:
    repo.ensure_session(session_id, project_id)
    return session_id


NOTE = {"keywords": ["tests"], "scope": "project", "kind": "command", "evidence": "tool_verified"}


def note_args(text_: str, **overrides: Any) -> dict[str, Any]:
    return {**NOTE, "text": text_, **overrides}
