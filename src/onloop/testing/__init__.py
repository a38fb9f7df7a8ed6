"""Fakes that ship in the library, for onloop's own tests and for testing your own setups offline.

- `Scenario`, `Step`, `Edit`: script what the scripted agent does per iteration (`onloop-scripted-agent`
  speaks Claude Code's stream-json; backend kind `scripted`).
- `FakeClock`: time that moves only when the code sleeps or the test advances it.
- `onloop.testing.fake_model_server`: a fake model server over real HTTP (OpenAI chat-completions,
  OpenAI Responses, Anthropic Messages, with SSE).
- `onloop.testing.models`: `ScriptedModel` and `FunctionModel` for code that takes a `ChatModel`.
- `onloop.testing.fake_agents`: fake Codex, aider, opencode and generic command executables.
"""

from __future__ import annotations

from onloop.testing.clock import FakeClock
from onloop.testing.fake_model_server import FakeModelServer, RecordedRequest, Turn, tool_call
from onloop.testing.models import FunctionModel, ScriptedModel, ScriptStep
from onloop.testing.scenario import Edit, Scenario, Step, load_scenario

__all__ = [
    "Edit",
    "FakeClock",
    "FakeModelServer",
    "FunctionModel",
    "RecordedRequest",
    "Scenario",
    "ScriptStep",
    "ScriptedModel",
    "Step",
    "Turn",
    "load_scenario",
    "tool_call",
]
