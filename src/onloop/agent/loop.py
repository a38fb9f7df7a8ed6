"""The built-in agent's tool-calling loop over a `ChatModel`.

One invocation is a short conversation: the system prompt and the task, then model turn, tools, model
turn, tools ... until the model answers without calling a tool (status OK, its text is the final
message) or a limit stops it. Before every model call the limits are checked, in this order:

- turns: at most `max_turns` model calls (status MAX_TURNS);
- wall clock: `request.timeout` for the whole invocation (status TIMEOUT);
- money: if `request.budget_remaining_usd` is known and the known spend has reached it, the next call
  would overspend (status FAILED, error "budget"). After every call its cost is added. A model whose
  cost is unknown cannot be budgeted; that is reported once as an event, not silently ignored.

A 429 from the model ends the invocation with status RATE_LIMITED and the reset time; the loop above
decides whether to wait and retry the same iteration. Any other `ModelError` is FAILED.

Every event goes to `request.log_path` as one JSON line as it happens (`transcript.EventLog`) and to
`request.on_event`; `transcript.parse_log` rebuilds usage and cost from that file after a crash.
The loop is a class with one small method per step, so that no step grows into a run-everything function.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from onloop.agent.memory import MemorySink, jsonl_sink
from onloop.agent.tools import ActionSpec, ToolContext, run_tool, tool_specs
from onloop.agent.transcript import CostTally, EventLog, usage_data
from onloop.backends.base import AgentRequest, AgentResult, AgentStatus
from onloop.clock import Clock, SystemClock, utc_iso
from onloop.models.base import ChatModel, Message, ModelError, ModelRequest, ModelResponse, ToolCall
from onloop.usage import CostSource

DEFAULT_SYSTEM_PROMPT = """\
You are a careful software engineer working inside a git worktree, unattended.
You have no shell. You can only use the tools you are given: read, list and search files, write files or
edit them with exact search/replace pairs, run one of the named actions ({actions}), update the checklist
in IMPLEMENTATION_PLAN.md, and save memory notes for later iterations. Paths are relative to the worktree.
Work on the task step by step; run the tests through an action to check your work.
When you are finished, answer with a short summary and call no tool."""


@dataclass(frozen=True, slots=True)
class AgentOptions:
    max_turns: int = 30
    max_tool_output_bytes: int = 20_000
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_tokens: int | None = None


class AgentRun:
    """One invocation of the built-in agent. Create, call `run()` once."""

    def __init__(self, model: ChatModel, request: AgentRequest, *, actions: Mapping[str, ActionSpec],
                 options: AgentOptions = AgentOptions(), clock: Clock | None = None,
                 memory_sink: MemorySink | None = None) -> None:
        self.model = model
        self.request = request
        self.options = options
        self.clock = clock or SystemClock()
        self.context = ToolContext(
            worktree=request.worktree, scratch_dir=request.scratch_dir, sandbox=request.sandbox,
            actions=actions, memory_sink=memory_sink or jsonl_sink(request.scratch_dir, self.clock),
            env=request.env, max_output_bytes=options.max_tool_output_bytes, limits=request.limits,
            run_id=request.run_id,
            iteration=request.iteration)
        self.tools = tool_specs(actions)
        system = options.system_prompt.replace("{actions}", ", ".join(sorted(actions)) or "none configured")
        self.messages: list[Message] = [Message("system", system), Message("user", request.prompt)]
        self.tally = CostTally()
        self.turns = 0
        self.log = EventLog(request.log_path, request.on_event, self.clock)
        self._started = self.clock.monotonic()
        self._warned_unknown_cost = False

    def run(self) -> AgentResult:
        try:
            self.log.emit("system", f"built-in agent on {self.model.name}",
                          {"model": self.model.name, "tools": [t.name for t in self.tools],
                           "actions": sorted(self.context.actions), "max_turns": self.options.max_turns})
            return self._loop()
        finally:
            self.log.close()

    def _loop(self) -> AgentResult:
        while True:
            stopped = self._check_limits()
            if stopped is not None:
                return stopped
            try:
                response = self._call_model()
            except ModelError as exc:
                return self._model_failed(exc)
            if not response.tool_calls:
                return self._finish(AgentStatus.OK, final_message=response.text)
            self._run_tools(response.tool_calls)

    def _check_limits(self) -> AgentResult | None:
        if self.turns >= self.options.max_turns:
            return self._finish(AgentStatus.MAX_TURNS, error=f"turn cap of {self.options.max_turns} reached")
        if self.clock.monotonic() - self._started > self.request.timeout:
            return self._finish(AgentStatus.TIMEOUT, error=f"timed out after {self.request.timeout:g}s")
        remaining = self.request.budget_remaining_usd
        if remaining is not None and self.tally.known >= remaining:
            return self._finish(AgentStatus.FAILED, error="budget",
                                data={"spent_usd": str(self.tally.known), "budget_remaining_usd": str(remaining)})
        return None

    def _call_model(self) -> ModelResponse:
        self.turns += 1
        request = ModelRequest(messages=tuple(self.messages), tools=self.tools, max_tokens=self.options.max_tokens)
        response = self.model.complete(request)
        self.tally.add(response.usage, response.cost)
        self.log.emit("usage", f"turn {self.turns}: {response.usage.total_tokens} tokens",
                      {"turn": self.turns, "model": response.model or self.model.name,
                       **usage_data(response.usage, response.cost)})
        self._warn_if_unbudgetable(response)
        if response.text:
            self.log.emit("message", response.text[:200], {"turn": self.turns, "text": response.text})
        self.messages.append(Message("assistant", response.text, tool_calls=response.tool_calls))
        return response

    def _warn_if_unbudgetable(self, response: ModelResponse) -> None:
        if response.cost.source is CostSource.UNKNOWN and not self._warned_unknown_cost:
            self._warned_unknown_cost = True
            self.log.emit("system", f"cost of {response.model or self.model.name} is unknown; "
                          "the budget cannot see this model's spend (set prices in the model config)",
                          {"warning": "cost_unknown"})

    def _run_tools(self, calls: tuple[ToolCall, ...]) -> None:
        for index, call in enumerate(calls):
            self.log.emit("tool_call", f"{call.name}({_brief(call.arguments)})",
                          {"turn": self.turns, "id": call.id, "name": call.name, "arguments": dict(call.arguments)})
            outcome = run_tool(self.context, call, f"turn{self.turns:03d}-{index}-{call.name}.txt")
            if outcome.guardrail is not None:
                self.log.emit("error", f"guardrail {outcome.guardrail['guardrail']}: {call.name}",
                              {**outcome.guardrail, "tool": call.name, "turn": self.turns})
            self.log.emit("tool_result", f"{call.name}: {'error' if outcome.is_error else 'ok'}",
                          {"turn": self.turns, "id": call.id, "name": call.name, "is_error": outcome.is_error,
                           "content": outcome.content, "omitted_bytes": outcome.omitted_bytes,
                           "full_output": str(outcome.full_output) if outcome.full_output else None})
            self.messages.append(Message("tool", outcome.content, tool_call_id=call.id, name=call.name))

    def _model_failed(self, exc: ModelError) -> AgentResult:
        if exc.rate_limited:
            reset = utc_iso(exc.reset_at) if exc.reset_at else None
            self.log.emit("rate_limit", str(exc), {"reset_at": reset, "status": exc.status})
            return self._finish(AgentStatus.RATE_LIMITED, error=str(exc), reset=exc)
        self.log.emit("error", str(exc), {"status": exc.status, "model_error": True})
        return self._finish(AgentStatus.FAILED, error=str(exc))

    def _finish(self, status: AgentStatus, *, final_message: str = "", error: str | None = None,
                reset: ModelError | None = None, data: dict[str, str] | None = None) -> AgentResult:
        reset_at = reset.reset_at if reset is not None else None
        cost = self.tally.cost()
        self.log.emit("result", f"{status.value} after {self.turns} turn(s)", {
            "status": status.value, "final_message": final_message, "error": error, "turns": self.turns,
            "rate_limit_reset": reset_at.isoformat() if reset_at else None,
            **usage_data(self.tally.usage, cost), **(data or {})})
        return AgentResult(status=status, final_message=final_message, events=self.log.count,
                           usage=self.tally.usage, cost=cost, raw_log_path=self.request.log_path,
                           model=self.model.name, error=error, rate_limit_reset=reset_at)


def _brief(arguments: Mapping[str, object]) -> str:
    text = json.dumps(dict(arguments), default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def run_agent(model: ChatModel, request: AgentRequest, *, actions: Mapping[str, ActionSpec] | None = None,
              options: AgentOptions = AgentOptions(), clock: Clock | None = None) -> AgentResult:
    """Run the built-in agent once; see the module docstring."""
    return AgentRun(model, request, actions=actions or {}, options=options, clock=clock).run()


__all__ = ["DEFAULT_SYSTEM_PROMPT", "AgentOptions", "AgentRun", "run_agent"]
