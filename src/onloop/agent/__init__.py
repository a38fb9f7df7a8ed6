"""onloop's built-in agent: a tool-calling loop over a chat model with structural tools only.

See `loop` (the conversation and its limits), `tools` (what the agent may do: no shell), `paths` (how
every path stays inside the worktree), `output` (truncating huge tool results), `transcript` (the
JSON-lines run log and `parse_log`), `plan` and `memory`. The agent backend wrapping it for the loop
is `onloop.backends.builtin`.
"""

from __future__ import annotations

from onloop.agent.loop import DEFAULT_SYSTEM_PROMPT, AgentOptions, AgentRun, run_agent
from onloop.agent.tools import ActionSpec, tool_specs
from onloop.agent.transcript import parse_log

__all__ = ["DEFAULT_SYSTEM_PROMPT", "ActionSpec", "AgentOptions", "AgentRun", "parse_log", "run_agent",
           "tool_specs"]
