"""The structural tools of the built-in agent, and the toolbox that runs them.

No shell, on purpose: the agent reads, lists, searches, writes and patches files inside the worktree,
runs one of the policy's named actions (`test`, `lint`, ...), ticks the plan and saves memory notes.
Anything else does not exist for it, so it cannot improvise a shortcut when the right path fails.

Arguments are validated with pydantic (the tool-call boundary); the JSON schemas offered to the model
are generated from the very same models, so they cannot drift. Every outcome, including a refusal, is
a `ToolOutcome` whose text goes back to the model; refusals by a guardrail also carry `guardrail` data
so the agent loop reports them as events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from onloop.agent import files
from onloop.agent.memory import MemoryNote, MemorySink
from onloop.agent.output import truncate
from onloop.agent.paths import PathRefused, resolve_inside
from onloop.agent.plan import PLAN_FILE, PlanError, update_plan
from onloop.models.base import ToolCall, ToolSpec
from onloop.process import Limits, ProcessSpec, Sandbox, run_process


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReadFileArgs(_Args):
    """Read a text file of the worktree."""

    path: str = Field(description="path relative to the worktree root")
    start_line: int = Field(1, ge=1, description="first line to return (1-based)")
    max_lines: int | None = Field(None, ge=1, description="how many lines to return; default: all")


class ListDirArgs(_Args):
    """List a directory of the worktree (directories end with '/')."""

    path: str = Field(".", description="directory relative to the worktree root")


class SearchArgs(_Args):
    """Search files for a regular expression (Python syntax); answers 'path:line: text'."""

    pattern: str = Field(min_length=1, description="Python regular expression")
    path: str = Field(".", description="file or directory to search, relative to the worktree root")
    glob: str | None = Field(None, description="only files matching this glob, e.g. '*.py'")
    max_results: int = Field(100, ge=1, le=1000)


class WriteFileArgs(_Args):
    """Create or overwrite a text file of the worktree with the given content."""

    path: str = Field(description="path relative to the worktree root")
    content: str


class Edit(_Args):
    search: str = Field(min_length=1, description="exact text to find; must occur exactly once")
    replace: str = Field(description="text to put in its place")


class ApplyPatchArgs(_Args):
    """Edit a file by exact search/replace pairs, applied in order, all or nothing."""

    path: str = Field(description="path relative to the worktree root")
    edits: list[Edit] = Field(min_length=1)


class RunActionArgs(_Args):
    """Run one of the named actions the policy allows (tests, lint, ...) and get its output."""

    name: str = Field(description="the action's name")


class UpdatePlanArgs(_Args):
    """Check, uncheck or add an item of IMPLEMENTATION_PLAN.md ('- [ ]' / '- [x]')."""

    action: Literal["check", "uncheck", "add"]
    item: str = Field(min_length=1, description="the item's text (exact, or a unique part of it)")


class SaveMemoryNoteArgs(_Args):
    """Save a short note worth remembering in later iterations (a fact, a pitfall, a decision)."""

    note: str = Field(min_length=1, max_length=4000)
    scope: Literal["session", "project", "global"] = "project"
    tags: list[str] = Field(default_factory=list, max_length=10)


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """A named action from the policy: exact argv and a wall-clock limit."""

    argv: tuple[str, ...]
    timeout: float = 600.0
    network: bool = False


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    content: str
    is_error: bool = False
    guardrail: Mapping[str, Any] | None = None
    omitted_bytes: int = 0
    full_output: Path | None = None


@dataclass
class ToolContext:
    """Everything the tools may touch for one agent invocation."""

    worktree: Path
    scratch_dir: Path
    sandbox: Sandbox
    actions: Mapping[str, ActionSpec]
    memory_sink: MemorySink
    env: Mapping[str, str] = field(default_factory=dict)
    max_output_bytes: int = 20_000
    limits: Limits = Limits()  # the policy's resource limits, for the actions the agent runs
    run_id: str = ""
    iteration: int = 0
    action_runs: int = 0


_TOOLS: dict[str, type[_Args]] = {
    "read_file": ReadFileArgs, "list_dir": ListDirArgs, "search": SearchArgs, "write_file": WriteFileArgs,
    "apply_patch": ApplyPatchArgs, "run_action": RunActionArgs, "update_plan": UpdatePlanArgs,
    "save_memory_note": SaveMemoryNoteArgs,
}


def tool_specs(actions: Mapping[str, ActionSpec]) -> tuple[ToolSpec, ...]:
    """The tools offered to the model, with schemas generated from the argument models."""
    specs = []
    for name, model in _TOOLS.items():
        description = (model.__doc__ or name).strip()
        if name == "run_action":
            description += f" Allowed names: {', '.join(sorted(actions)) or '(none configured)'}."
        specs.append(ToolSpec(name, description, model.model_json_schema()))
    return tuple(specs)


def run_tool(context: ToolContext, call: ToolCall, spill_name: str) -> ToolOutcome:
    """Validate and run one tool call; never raises for the model's mistakes, it answers them."""
    model = _TOOLS.get(call.name)
    if model is None:
        return ToolOutcome(f"unknown tool {call.name!r}; tools: {', '.join(_TOOLS)}", is_error=True)
    if call.invalid_arguments is not None:
        return ToolOutcome(f"the arguments are not a JSON object: {call.invalid_arguments[:200]!r}", is_error=True)
    try:
        args = model.model_validate(dict(call.arguments))
        text = _HANDLERS[call.name](context, args)
    except ValidationError as exc:
        return ToolOutcome(f"invalid arguments for {call.name}: {_errors(exc)}", is_error=True)
    except PathRefused as exc:
        return ToolOutcome(f"refused: {exc}", is_error=True, guardrail={"guardrail": exc.guardrail, "path": exc.path})
    except (files.ToolFailure, PlanError) as exc:
        return ToolOutcome(str(exc), is_error=True)
    except (OSError, UnicodeError) as exc:
        return ToolOutcome(f"{call.name} failed: {exc}", is_error=True)
    cut = truncate(text, context.max_output_bytes, context.scratch_dir / "tool-output" / spill_name)
    return ToolOutcome(cut.text, omitted_bytes=cut.omitted_bytes, full_output=cut.full_output)


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}" for e in exc.errors())


def _run_action(context: ToolContext, args: RunActionArgs) -> str:
    action = context.actions.get(args.name)
    if action is None:
        allowed = ", ".join(sorted(context.actions)) or "none are configured"
        raise files.ToolFailure(f"no action named {args.name!r}; allowed: {allowed}")
    context.action_runs += 1
    log_path = context.scratch_dir / "actions" / f"{context.action_runs:03d}-{args.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    spec = ProcessSpec(argv=action.argv, cwd=context.worktree, env=dict(context.env), timeout=action.timeout,
                       writable=(context.worktree,), network=action.network, label=f"action:{args.name}",
                       limits=context.limits if context.limits.output_bytes else Limits(output_bytes=50_000_000))
    result = run_process(spec, context.sandbox, log_path=log_path)
    output = log_path.read_bytes().decode("utf-8", "replace")
    status = "timed out" if result.timed_out else f"exit code {result.exit_code}"
    return f"action {args.name}: {status} ({result.duration:.1f}s)\n{output}"


def _save_note(context: ToolContext, args: SaveMemoryNoteArgs) -> str:
    context.memory_sink(MemoryNote(args.note, args.scope, tuple(args.tags), context.run_id, context.iteration))
    return "note saved"


Handler = Callable[[ToolContext, Any], str]
_HANDLERS: dict[str, Handler] = {
    "read_file": lambda c, a: files.read_file(c.worktree, a.path, a.start_line, a.max_lines),
    "list_dir": lambda c, a: files.list_dir(c.worktree, a.path),
    "search": lambda c, a: files.search(c.worktree, a.pattern, a.path, a.glob, a.max_results),
    "write_file": lambda c, a: files.write_file(c.worktree, a.path, a.content),
    "apply_patch": lambda c, a: files.apply_edits(c.worktree, a.path, [(e.search, e.replace) for e in a.edits]),
    "run_action": _run_action,
    # The plan goes through the same containment check: a repository may ship it as a symlink.
    "update_plan": lambda c, a: update_plan(resolve_inside(c.worktree, PLAN_FILE), a.action, a.item),
    "save_memory_note": _save_note,
}
