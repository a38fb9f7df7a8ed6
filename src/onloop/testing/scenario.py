"""Scenarios for the scripted agent: what it does in each iteration, written as TOML or built in code.

A scenario scripts, per iteration: file edits, plan updates (check items off), the final message, a
completion claim, usage and cost to report, the exit code, a delay, a crash, a rate limit. Iterations
past the end of the list use `[default]` (by default: do nothing, claim nothing).

    [[iteration]]
    message = "Added mean()"
    plan_check = ["mean"]                      # check off the plan items containing this text
    usage = { input_tokens = 1200, output_tokens = 300 }
    cost_usd = "0.012"
    [[iteration.edit]]
    path = "stats.py"
    append = "def mean(xs): ..."               # or: write = "...", replace = ["old", "new"], delete = true
    denied = false                             # true: refused by the CLI's permission system, not applied

    [[iteration]]
    claim_done = true                          # the final message carries the done marker
    crash = "before_result"                    # or "kill" (SIGKILL itself mid-stream), "" (no crash)
    delay = 0.5                                # seconds to sleep after the edits, before the result
    rate_limit = { attempts = 1, reset_in = 2 }   # the first N attempts hit a usage limit
    auth_failure = true                        # the provider refuses the key: the fake CLI retries the way the
                                               # real one does (honouring the retry limit onloop passes), then fails
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

CrashMode = Literal["", "before_result", "kill", "hang"]


@dataclass(frozen=True)
class Edit:
    path: str
    write: str | None = None
    append: str | None = None
    replace: tuple[str, str] | None = None
    delete: bool = False
    symlink_to: str | None = None  # create `path` as a symlink (red-team scenarios)
    denied: bool = False  # the agent's permission system refuses it: not applied, reported as a denial


@dataclass(frozen=True)
class Step:
    message: str = "Worked on the plan."
    edits: tuple[Edit, ...] = ()
    plan_check: tuple[str, ...] = ()
    plan_add: tuple[str, ...] = ()
    claim_done: bool = False
    usage: dict[str, int] = field(default_factory=lambda: {"input_tokens": 1000, "output_tokens": 200})
    cost_usd: str = "0.01"
    exit_code: int = 0
    delay: float = 0.0
    crash: CrashMode = ""
    rate_limit_attempts: int = 0
    rate_limit_reset_in: float = 1.0
    is_error: bool = False
    commands: tuple[tuple[str, ...], ...] = ()  # argv lists the agent runs (red team: escapes)
    auth_failure: bool = False  # every model call is refused with a 401


@dataclass(frozen=True)
class Scenario:
    steps: tuple[Step, ...]
    default: Step = Step(message="Nothing left to do.")

    def step(self, iteration: int) -> Step:
        return self.steps[iteration - 1] if 1 <= iteration <= len(self.steps) else self.default

    def to_dict(self) -> dict[str, Any]:
        return {"iteration": [_step_dict(s) for s in self.steps], "default": _step_dict(self.default)}

    def write(self, path: Path) -> Path:
        import json

        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path


def load_scenario(path: Path) -> Scenario:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        data = tomllib.loads(text)
    else:
        import json

        data = json.loads(text)
    steps = tuple(_step(raw) for raw in data.get("iteration", []))
    default = _step(data["default"]) if "default" in data else Step(message="Nothing left to do.")
    return Scenario(steps, default)


def _step(raw: dict[str, Any]) -> Step:
    raw = dict(raw)
    edits = tuple(_edit(e) for e in raw.pop("edit", raw.pop("edits", [])))
    limit = raw.pop("rate_limit", None) or {}
    kwargs: dict[str, Any] = {k: v for k, v in raw.items()}
    for key in ("plan_check", "plan_add"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    if "commands" in kwargs:
        kwargs["commands"] = tuple(tuple(c) for c in kwargs["commands"])
    if limit:
        kwargs["rate_limit_attempts"] = int(limit.get("attempts", 1))
        kwargs["rate_limit_reset_in"] = float(limit.get("reset_in", 1.0))
    return Step(edits=edits, **kwargs)


def _edit(raw: dict[str, Any]) -> Edit:
    raw = dict(raw)
    if "replace" in raw:
        old, new = raw["replace"]
        raw["replace"] = (old, new)
    return Edit(**raw)


def _step_dict(step: Step) -> dict[str, Any]:
    data = asdict(step)
    data["edit"] = [{k: v for k, v in e.items() if v not in (None, False)} for e in data.pop("edits")]
    data["rate_limit"] = {"attempts": data.pop("rate_limit_attempts"), "reset_in": data.pop("rate_limit_reset_in")}
    return data
