"""`onloop init`: scaffold a workspace with a commented onloop.toml and the canon files.

The onloop.toml template is rendered from the config models themselves (each key with its default and
its description as a comment), so it documents every key and cannot drift from the code. The test
command is detected from the repository: pytest, npm test, cargo test, go test, make test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from onloop.config import CONFIG_FILE, Config, ContextConfig, GateConfig, RunConfig
from onloop.loop.prompts import DEFAULT_BUILD_PROMPT, DEFAULT_PLAN_PROMPT
from onloop.policy.model import Action, Policy, ResourceLimits

CANON = {
    "PROMPT.md": DEFAULT_BUILD_PROMPT,
    "PROMPT_plan.md": DEFAULT_PLAN_PROMPT,
    "specs/README.md": "# Specs\n\nOne file per topic in this folder; list them here with a line each.\n",
    "IMPLEMENTATION_PLAN.md": "# Implementation plan\n\nA prioritised checklist; the agent keeps it current.\n\n"
                              "- [ ] Write the specs in specs/ and run `onloop run --mode plan`\n",
    "AGENTS.md": "# AGENTS.md\n\nShort operational notes for the agent: how to build and test. Never status.\n",
}


def detect_test_command(root: Path) -> list[str] | None:
    """The repository's test command, or None when nothing recognisable is there."""
    if (root / "pyproject.toml").exists() or (root / "pytest.ini").exists() or (root / "setup.py").exists() \
            or any(root.glob("test*/test_*.py")) or any(root.glob("test_*.py")):
        return ["python", "-m", "pytest", "-q", "--junitxml={junit}"]
    if (root / "package.json").exists():
        scripts = json.loads((root / "package.json").read_text() or "{}").get("scripts", {})
        if "test" in scripts:
            return ["npm", "test", "--silent"]
    if (root / "Cargo.toml").exists():
        return ["cargo", "test"]
    if (root / "go.mod").exists():
        return ["go", "test", "-json", "./..."]
    makefile = root / "Makefile"
    if makefile.exists() and any(line.startswith("test:") for line in makefile.read_text().splitlines()):
        return ["make", "test"]
    return None


def scaffold(root: Path, *, force: bool = False) -> list[Path]:
    """Write the files that are missing (all of them with `force`); returns what was written."""
    written = []
    config_path = root / CONFIG_FILE
    if force or not config_path.exists():
        config_path.write_text(render_config(test_command=detect_test_command(root)))
        written.append(config_path)
    for rel, text in CANON.items():
        path = root / rel
        if force or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    return written


def render_config(config: Config | None = None, *, test_command: list[str] | None = None) -> str:
    """A commented onloop.toml: every key, its value and its description."""
    config = config or Config()
    out = ["# onloop.toml: every key is documented; delete what you do not change.", ""]
    out += _table("run", RunConfig, config.run)
    out += _table("context", ContextConfig, config.context)
    command = test_command or ["python", "-m", "pytest", "-q", "--junitxml={junit}"]
    gates = config.gates or {"tests": GateConfig(command=command)}
    for name, gate in gates.items():
        out += _table(f"gates.{name}", GateConfig, gate, note="a gate: onloop runs it after every iteration")
    out += ["# Backends: [backends.NAME] with kind = claude_code | codex | aider | opencode | command | builtin |",
            "# scripted, plus that kind's options. run.backend names one of them (or a kind).", "#",
            '# [backends.claude]', '# kind = "claude_code"', '# model = "claude-sonnet-4-5"', ""]
    for name, backend in config.backends.items():
        out += [f"[backends.{name}]"] + [f"{k} = {_toml(v)}" for k, v in backend.model_dump().items()] + [""]
    out += _table("policy", Policy, config.policy, skip=("actions", "limits"))
    out += _table("policy.limits", ResourceLimits, config.policy.limits)
    out += ["# Named actions the agent may ask onloop to run (and nothing else):",
            *[f"#   {name}: {description}" for name, description in _descriptions(Action).items()]]
    for name, action in config.policy.actions.items():
        out += [f"[policy.actions.{name}]"] + [f"{k} = {_toml(v)}" for k, v in action.model_dump().items()] + [""]
    if not config.policy.actions:
        out += ["# [policy.actions.test]", f"# argv = {_toml(command)}", '# timeout = "10m"', ""]
    return "\n".join(out).rstrip() + "\n"


def _table(name: str, model: type[BaseModel], value: BaseModel, *, note: str = "",
           skip: tuple[str, ...] = ()) -> list[str]:
    lines = [f"[{name}]"] + ([f"# {note}"] if note else [])
    for key, field in model.model_fields.items():
        if key in skip:
            continue
        current = getattr(value, key)
        lines.append(f"# {field.description}")
        if current is None:
            lines.append(f"# {key} =")
        else:
            lines.append(f"{key} = {_toml(current)}")
    return [*lines, ""]


def _descriptions(model: type[BaseModel]) -> dict[str, str]:
    return {key: field.description or "" for key, field in model.model_fields.items()}


def _toml(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))
