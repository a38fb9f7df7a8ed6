"""`onloop.toml`: its schema, its defaults, and errors that say what to fix.

Every key is documented where it is defined (the `description` of its field); `onloop init` renders the
commented template from these very descriptions, and a test checks that every key has one, so the docs
cannot drift from the code. Unknown keys are errors, not warnings: a typo such as `max_iteration` must
not silently fall back to a default in an unattended run.

Errors name the key (dotted path), what is allowed, and the file and line where the key was found.
"""

from __future__ import annotations

import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from onloop.errors import ConfigError
from onloop.models.config import ModelConfig
from onloop.policy.model import Policy, Size
from onloop.usage import parse_money

CONFIG_FILE = "onloop.toml"

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `"90s"`, `"30m"`, `"2h"` or `"1h30m"`; raises ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90, '90s', '30m', '2h' or '1h30m'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match or not any(match.groups()):
            raise ValueError(f"not a duration: {value!r} (use 90, '90s', '30m', '2h' or '1h30m')")
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


def _money(value: Any) -> Decimal:
    return parse_money(value)


Duration = Annotated[float, BeforeValidator(parse_duration)]
Money = Annotated[Decimal, BeforeValidator(_money)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunConfig(_Section):
    """How a run goes and when it must stop."""

    mode: Literal["build", "plan"] = Field(
        "build", description="build works the plan; plan regenerates IMPLEMENTATION_PLAN.md from specs and code"
    )
    backend: str = Field("claude_code", description="name of the backend (a [backends.NAME] table or a kind)")
    fallback_backend: str | None = Field(
        None, description="backend to switch to while the main one is rate limited (optional)"
    )
    max_iterations: int = Field(25, ge=1, description="iteration cap; the run stops with max_iterations")
    max_time: Duration = Field(7200.0, description="wall-clock cap for the whole run, e.g. '2h'")
    budget_usd: Money = Field(Decimal("5.00"), description="money cap in USD for the whole run, e.g. '5.00'")
    max_tokens: int | None = Field(
        None, ge=1, description="token cap (input + output) for the whole run; unset means no token cap"
    )
    unbounded: bool = Field(
        False, description="allow caps to be raised without limit; required for max_iterations above 1000"
    )
    agent_timeout: Duration = Field(1800.0, description="wall-clock limit of one agent invocation")
    no_progress_limit: int = Field(
        3, ge=1, description="stop as no_progress after this many iterations in a row without verified delta"
    )
    stuck_limit: int = Field(
        3, ge=1, description="stop as stuck after the same gate failure fingerprint this many times in a row"
    )
    agent_error_limit: int = Field(
        3, ge=1, description="stop as agent_error after the backend failed this many times in a row"
    )
    rate_limit_max_wait: Duration = Field(
        3600.0, description="longest single wait for a rate-limit reset before the run stops as budget"
    )
    done_marker: str = Field(
        "<onloop:done/>", description="text the agent puts in its final message to claim the work is complete "
        "(a `command` agent with output = \"text\": on the last non-empty line it prints); onloop then verifies"
    )

    @model_validator(mode="after")
    def _finite(self) -> RunConfig:
        if self.max_iterations > 1000 and not self.unbounded:
            raise ValueError("max_iterations above 1000 needs run.unbounded = true")
        return self


class NormaliseConfig(_Section):
    """How a differential gate normalises outputs before comparing them."""

    strip_whitespace: bool = Field(False, description="ignore trailing spaces and leading/trailing blank lines")
    sort_lines: bool = Field(False, description="compare the lines in sorted order")
    json_canonical: bool = Field(False, description="parse as JSON (or JSON lines) and compare canonically")
    replacements: list[tuple[str, str]] = Field(
        default_factory=list, description="[regex, replacement] pairs applied to both outputs, in order"
    )


class GateConfig(_Section):
    """One orchestrator-owned check. `{junit}` in a command is replaced by a report path.

    kind = "command" runs `command`; "differential" runs `reference` and `candidate` on every file of
    `inputs` and compares their outputs (for ports); "judge" asks `model` to grade the run's diff against
    `rubric` with a validated pass/fail (subjective criteria only: it runs after the other gates pass and
    can only add a failure, never override one).
    """

    kind: Literal["command", "differential", "judge"] = Field("command", description="command, differential or judge")
    command: list[str] | None = Field(
        None, description="exact argv, e.g. ['python', '-m', 'pytest', '-q', '--junitxml={junit}']"
    )
    timeout: Duration = Field(600.0, description="wall-clock limit of one gate run, e.g. '10m'")
    format: str = Field(
        "auto", description="output parser: auto, junit, pytest, unittest, ruff, mypy, pyright, eslint, tsc, cargo, "
        "go, exit (exit code only), or a plugin"
    )
    required: bool = Field(True, description="a required gate must pass (against the baseline) for done")
    flaky_reruns: int = Field(
        1, ge=0, le=3, description="re-runs of a gate with new failures: a check that then passes is flaky"
    )
    tolerate: list[str] = Field(
        default_factory=list, description="check ids or globs that may fail at the end as they failed at baseline "
        "(every other check failing at baseline is a target that must pass for done)"
    )
    tolerate_preexisting: bool = Field(
        False, description="tolerate every check that fails at baseline (no targets): only new failures block done"
    )
    harness: list[str] = Field(
        default_factory=list, description="more globs of harness files, always taken from the base commit when "
        "this gate runs (conftest.py files, test configuration, helpers and data under test dirs are by default)"
    )
    writable: list[str] | None = Field(
        None, description="directories of the checkout the gate may write (the checkout is read-only to gates); "
        "default: the usual caches and build dirs that hold no tracked file (.pytest_cache, target, ...)"
    )
    max_output: Size = Field(
        256 * 1024**2, description="differential: the largest output of one side on one input, compared whole; "
        "above it the input is an error, never a partial comparison, e.g. '256MiB'"
    )
    reference_files: list[str] | None = Field(
        None, description="differential: globs of the reference's files in the repository and absolute host paths, "
        "hidden from the candidate (default: what the reference argv names)"
    )
    reference: list[str] | None = Field(None, description="differential: the reference argv ({input} = the file)")
    candidate: list[str] | None = Field(None, description="differential: the candidate argv ({input} = the file)")
    inputs: list[str] = Field(default_factory=list, description="differential: globs of input files in the worktree")
    normalise: NormaliseConfig = Field(default_factory=NormaliseConfig, description="differential: normalisation")
    rubric: str | None = Field(None, description="judge: what the change must satisfy, in plain words")
    model: ModelConfig | None = Field(None, description="judge: the model that grades (never the embedded one)")

    @field_validator("command", "reference", "candidate")
    @classmethod
    def _non_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not value[0].strip()):
            raise ValueError("an argv must be a non-empty list")
        return value

    @model_validator(mode="after")
    def _complete(self) -> GateConfig:
        needed = {"command": ("command",), "differential": ("reference", "candidate", "inputs"),
                  "judge": ("rubric", "model")}[self.kind]
        missing = [key for key in needed if not getattr(self, key)]
        if missing:
            raise ValueError(f"a {self.kind} gate needs {', '.join(missing)}")
        return self


class ContextConfig(_Section):
    """What every iteration's fresh context is assembled from, and its size."""

    max_tokens: int = Field(16000, ge=1000, description="token budget of the assembled context (estimated)")
    prompt: str = Field("PROMPT.md", description="standing instruction for build mode")
    plan_prompt: str = Field("PROMPT_plan.md", description="standing instruction for plan mode")
    plan: str = Field("IMPLEMENTATION_PLAN.md", description="the prioritised checklist the agent keeps current")
    agents: str = Field("AGENTS.md", description="short operational notes: how to build and test")
    specs: str = Field("specs", description="folder of specs, one per topic, with an index README.md")


class HallucinationConfig(_Section):
    """Checks for what the agent made up: packages, modules, and edits it claims but did not make."""

    dependencies: bool = Field(True, description="look up dependencies added to manifests in their registry")
    imports: bool = Field(True, description="flag imports of modules that exist nowhere")
    claimed_paths: bool = Field(True, description="flag files the final message claims changed but did not")
    registries: dict[str, str] = Field(
        default_factory=dict, description="registry base URLs by ecosystem (pypi, npm, crates); defaults: public"
    )
    python: str | None = Field(
        None, description="the project's interpreter, for the import check (default: onloop's own)"
    )
    online: bool = Field(
        False, description="ask the registries over the network for names offline data cannot verify (never with "
        "policy.network = \"none\"); by default only offline data is used: `onloop registry sync`, the installed "
        "environment and lock files"
    )


class MemoryConfig(_Section):
    """Memory that outlives an iteration: injected at the top of every context, consolidated at the end."""

    enabled: bool = Field(True, description="inject memory into every iteration and ingest the agent's notes")
    token_budget: int = Field(1200, ge=200, description="token budget of the memory injection")
    model: ModelConfig | None = Field(
        None, description="model for end-of-run consolidation; unset uses the deterministic consolidation"
    )


class BackendConfig(BaseModel):
    """A named backend. `kind` picks the implementation; the other keys are that kind's options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str = Field(description="claude_code, codex, aider, opencode, command, builtin, scripted, or a plugin")


class Config(_Section):
    run: RunConfig = Field(default_factory=RunConfig, description="caps and stop rules")
    context: ContextConfig = Field(default_factory=ContextConfig, description="context assembly")
    gates: dict[str, GateConfig] = Field(default_factory=dict, description="named gates")
    backends: dict[str, BackendConfig] = Field(default_factory=dict, description="named backends")
    policy: Policy = Field(default_factory=Policy, description="what an agent may do")
    hallucination: HallucinationConfig = Field(default_factory=HallucinationConfig, description="made-up things")
    memory: MemoryConfig = Field(default_factory=MemoryConfig, description="the memory lifecycle")

    def backend_config(self, name: str) -> BackendConfig:
        if name in self.backends:
            return self.backends[name]
        return BackendConfig(kind=name)


def with_policy_file(config: Config, path: Path) -> Config:
    """`config` with the policy of a run-level policy file laid over the workspace's, key by key.

    The file holds a `[policy]` table (the same keys as onloop.toml's); tables inside it (`limits`,
    `actions`) merge key by key, everything else replaces. The result is validated like onloop.toml.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("policy file not found", path=path) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=path, line=_toml_error_line(str(exc))) from None
    extra = set(data) - {"policy"}
    if extra:
        raise ConfigError("a policy file holds only a [policy] table", key=sorted(extra)[0], allowed=["policy"],
                          path=path)
    merged = config.policy.model_dump()
    for key, value in data.get("policy", {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    try:
        return Config.model_validate({**config.model_dump(), "policy": merged})
    except ValidationError as exc:
        raise _config_error(exc, text, path) from None


def load_config(path: Path) -> Config:
    """Read and validate `path`. Raises ConfigError naming the key, what is allowed, file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no onloop.toml here; run `onloop init` first", path=path) from None
    return parse_config(text, path)


def parse_config(text: str, path: Path | None = None) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        raise ConfigError(f"not valid TOML: {exc}", path=path, line=line) from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, text, path) from None


def _toml_error_line(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


def _config_error(exc: ValidationError, text: str, path: Path | None) -> ConfigError:
    first = exc.errors()[0]
    loc = tuple(str(part) for part in first["loc"])
    key = ".".join(loc)
    allowed = _allowed_for(first, loc)
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    more = len(exc.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(message, key=key or None, allowed=allowed, path=path, line=find_key_line(text, loc))


def _allowed_for(error: Any, loc: tuple[str, ...]) -> list[str] | str | None:
    if error["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        return sorted(model.model_fields) if model else None
    if error["type"] == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return [part.strip(" '\"") for part in re.split(r",| or ", expected) if part.strip(" '\"")]
    return None


def _model_at(loc: tuple[str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    index = 0
    while index < len(loc):
        field = model.model_fields.get(loc[index])
        if field is None:
            return None
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            index += 1
            continue
        args = getattr(annotation, "__args__", ())
        inner = args[-1] if args else None
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
            index += 2  # skip the dict key (the gate or backend name)
            continue
        return None
    return model


def find_key_line(text: str, loc: tuple[str, ...]) -> int | None:
    """Best-effort line number of the dotted key `loc` in TOML `text` (tables, dotted keys, inline)."""
    if not loc:
        return None
    lines = text.splitlines()
    table: tuple[str, ...] = ()
    fallback: int | None = None
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?$", line)
        if header:
            table = tuple(part.strip().strip("\"'") for part in header.group(1).split("."))
            if table == loc:
                return number
            if fallback is None and loc[: len(table)] == table:
                fallback = number
            continue
        key_match = re.match(r"^([A-Za-z0-9_.\-\"' ]+?)\s*=", line)
        if not key_match:
            continue
        key = tuple(part.strip().strip("\"'") for part in key_match.group(1).split("."))
        full = table + key
        if full == loc or (len(loc) > len(full) and loc[: len(full)] == full):
            return number
    return fallback
