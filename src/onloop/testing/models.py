"""In-process fake chat models: `ScriptedModel` (a queue of answers) and `FunctionModel` (a function).

Both satisfy `onloop.models.base.ChatModel` and record every request, so a test can check what the
agent sent. A script step is a `ModelResponse`, a `ModelError` to raise (a 429 with its reset time, for
example), or a callable that takes the request and returns or raises one of those. `assert_complete()`
fails a test whose script was not used up: an agent that stopped early is a bug, not a pass.

    model = ScriptedModel([
        ModelResponse(text="", tool_calls=(ToolCall("c1", "read_file", {"path": "README.md"}),)),
        lambda request: ModelResponse(text=f"read {len(request.messages)} messages"),
    ])
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Union

from onloop.models.base import ModelError, ModelRequest, ModelResponse

ScriptStep = Union[ModelResponse, ModelError, Callable[[ModelRequest], ModelResponse]]  # noqa: UP007


class ScriptedModel:
    """Answers from a script, one step per call; raises AssertionError when called past its end."""

    def __init__(self, steps: Iterable[ScriptStep], *, name: str = "scripted-model") -> None:
        self.name = name
        self._steps: deque[ScriptStep] = deque(steps)
        self._lock = threading.Lock()
        self.requests: list[ModelRequest] = []

    def complete(self, request: ModelRequest) -> ModelResponse:
        with self._lock:
            self.requests.append(request)
            if not self._steps:
                raise AssertionError(f"{self.name}: called {len(self.requests)} times, script has no step left")
            step = self._steps.popleft()
        if isinstance(step, ModelError):
            raise step
        if isinstance(step, ModelResponse):
            return step
        return step(request)

    def add(self, *steps: ScriptStep) -> None:
        with self._lock:
            self._steps.extend(steps)

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._steps)

    def assert_complete(self) -> None:
        if self.remaining:
            raise AssertionError(f"{self.name}: {self.remaining} scripted step(s) were never used")


class FunctionModel:
    """Answers with `function(request)`; the function may raise `ModelError`."""

    def __init__(self, function: Callable[[ModelRequest], ModelResponse], *, name: str = "function-model") -> None:
        self.name = name
        self.function = function
        self.requests: list[ModelRequest] = []

    def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        return self.function(request)
