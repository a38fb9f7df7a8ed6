"""The policy: what an agent may do, as validated data.

It is read from the `[policy]` table of `onloop.toml` and enforced elsewhere: by the sandbox around
every agent and gate process (`onloop.policy.sandbox`), by the built-in agent's structural tools, and by
the diff audit after every iteration (`onloop.policy.audit`). A policy that contradicts itself is refused
at load with the key named.
"""

from __future__ import annotations

import fnmatch
import re
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

DEFAULT_PROTECTED = (
    ".github/**",
    ".gitlab-ci.yml",
    ".ci/**",
    "**/migrations/**",
    "onloop.toml",
    "**/*.lock",
    "**/package-lock.json",
    "**/pnpm-lock.yaml",
    "**/yarn.lock",
    "**/poetry.lock",
    "**/uv.lock",
    "**/Cargo.lock",
    "**/go.sum",
    ".git/**",
)

DEFAULT_ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "TERM", "TZ")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}


def parse_size(value: Any) -> int:
    """Bytes from `1024`, `"50MB"`, `"4GiB"`; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 1024, '50MB' or '4GiB'")
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r} (use 1024, '50MB' or '4GiB')")
    number, unit = float(match.group(1)), (match.group(2) or "").upper()
    base = 1024 if "I" in unit else 1000
    letter = unit[:1] if unit not in ("", "B") else ""
    scale = base ** "KMGT".index(letter) * base if letter else 1
    return int(number * scale)


def glob_match(pattern: str, path: str) -> bool:
    """Whether the worktree-relative POSIX `path` matches `pattern`.

    Semantics (those of .gitignore-style globs, which is what operators expect): `*`, `?` and `[...]`
    match within one path segment; `**` as a whole segment matches zero or more segments; a pattern
    without a slash (`onloop.toml`, `*.lock`) is anchored at the root like any other. Written here
    rather than with `PurePath.full_match` because that only exists from Python 3.13.
    """
    return _match_parts(_split(pattern), tuple(p for p in path.split("/") if p not in ("", ".")))


@lru_cache(maxsize=1024)
def _split(pattern: str) -> tuple[str, ...]:
    return tuple(p for p in pattern.strip("/").split("/") if p not in ("", "."))


def _match_parts(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        # Zero or more segments: try every split point (patterns are short, paths are short).
        return any(_match_parts(rest, parts[i:]) for i in range(len(parts) + 1))
    if not parts or not fnmatch.fnmatchcase(parts[0], head):
        return False
    return _match_parts(rest, parts[1:])


def _seconds(value: Any) -> float:
    from onloop.config import parse_duration  # config imports this module; import late

    return parse_duration(value)


Size = Annotated[int, BeforeValidator(parse_size)]
Seconds = Annotated[float, BeforeValidator(_seconds)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Action(_Strict):
    """A named command the agent may ask onloop to run, nothing else."""

    argv: list[str] = Field(description="exact argv, e.g. ['pytest', '-q']")
    timeout: Seconds = Field(600.0, description="wall-clock limit of one run of this action")
    network: bool = Field(False, description="whether this action may use the network (policy.network permitting)")

    @field_validator("argv")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value or not value[0].strip():
            raise ValueError("an action needs a non-empty argv")
        program = PurePosixPath(value[0])
        # A program named by path must live in the worktree (`.venv/bin/python`, `./scripts/t.sh`);
        # an absolute path or one climbing out with `..` would run something the run does not own.
        # Bare names (`pytest`) are looked up on the sandbox's PATH.
        if program.is_absolute() or ".." in program.parts:
            raise ValueError(
                f"argv[0] {value[0]!r} is a path outside the worktree; use a bare program name or a "
                "path relative to the worktree"
            )
        return value


class ResourceLimits(_Strict):
    """Limits applied to every agent and gate process (and their children)."""

    wall: Seconds = Field(3600.0, description="wall-clock limit per process, e.g. '1h'")
    cpu: Seconds = Field(3600.0, description="CPU time limit per process, e.g. '30m'")
    memory: Size = Field(8 * 1024**3, description="memory limit per process (heap and anonymous mappings), e.g. '8GiB'")
    processes: int = Field(4096, ge=16, description="process count limit for the sandbox user")
    output: Size = Field(50 * 1000**2, description="largest output kept from one process, e.g. '50MB'")
    files_written: Size = Field(1024**3, description="largest single file a process may write, e.g. '1GiB'")
    diff_bytes: Size = Field(
        100 * 1000**2, description="most bytes an iteration may add or change in the worktree in all, e.g. '100MB'"
    )
    diff_files: int = Field(5000, ge=1, description="most files an iteration may add, change or delete")


class Policy(_Strict):
    sandbox: Literal["bwrap", "none"] = Field(
        "bwrap", description="bwrap runs every agent and gate under bubblewrap; none is a loud, recorded opt-out"
    )
    network: Literal["none", "model-only", "full"] = Field(
        "none", description="none, model-only (just the model endpoint), or full"
    )
    protected: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PROTECTED),
        description="globs the agent must not change (the diff audit rolls back a change to them)",
    )
    writable: list[str] = Field(
        default_factory=list, description="extra writable paths inside the worktree (the worktree is writable)"
    )
    env_allow: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ENV_ALLOW),
        description="environment variables passed to agents and gates; secrets never pass unless named",
    )
    hidden: list[str] = Field(
        default_factory=list,
        description="absolute host paths hidden inside the sandbox (an empty tmpfs over each); only the "
        "system dirs (/usr, /etc, /opt, ...) are visible at all, and /tmp, /root, /home, /run, the "
        "invoking user's home and ONLOOP_HOME are always hidden",
    )
    readable: list[str] = Field(
        default_factory=list,
        description="absolute host paths shown read-only inside the sandbox, e.g. a toolchain outside the "
        "system dirs such as '/root/.pyenv' or '/srv/sdk'",
    )
    actions: dict[str, Action] = Field(default_factory=dict, description="named actions the agent may run")
    limits: ResourceLimits = Field(default_factory=ResourceLimits, description="resource limits per process")
    entropy_secrets: Literal["block", "warn"] = Field(
        "block", description="a high-entropy string that matches no known secret format: block (roll back) or warn"
    )
    max_breaches: int = Field(3, ge=1, description="policy breaches in a run before it stops as blocked")
    harness: Literal["protected", "extend"] = Field(
        "protected", description="protected: any change to the test harness (conftest.py, test configuration, "
        "helpers and data under test dirs) is rolled back; extend: the agent may add new test files, helpers and "
        "data (existing harness files always come from the base commit)"
    )
    new_conftest: bool = Field(
        False, description="load conftest.py files the agent adds (only with harness = \"extend\"); by default "
        "gates never load them"
    )
    spec_changes: Literal["review", "planned"] = Field(
        "review", description="an existing test's expected values changed: review (blocks done, goes to review) or "
        "planned (allowed when a plan item of the base commit says \"spec change\")"
    )
    caches: list[str] = Field(
        default_factory=list, description="globs of ignored paths in the worktree kept between iterations (every "
        "other ignored or untracked file is removed; caches never reach a gate's checkout), e.g. ['.venv/']"
    )

    @field_validator("writable")
    @classmethod
    def _relative_inside(cls, value: list[str], info: ValidationInfo) -> list[str]:
        # `protected` is declared before `writable`, so it is already validated here; checking in this
        # field validator (not a model validator) makes the error name `policy.writable`.
        protected = info.data.get("protected", DEFAULT_PROTECTED)
        for entry in value:
            path = PurePosixPath(entry)
            if not entry.strip() or path.is_absolute() or ".." in path.parts:
                raise ValueError(
                    f"{entry!r} must be a path relative to the worktree, without '..' (the worktree "
                    "is the only writable area)"
                )
            clean = str(path)
            for pattern in protected:
                if glob_match(pattern, clean) or glob_match(pattern, clean + "/x"):
                    raise ValueError(f"{entry!r} is also protected by {pattern!r}; a path cannot be both")
        return value

    @field_validator("hidden", "readable")
    @classmethod
    def _absolute_host_paths(cls, value: list[str]) -> list[str]:
        for entry in value:
            path = PurePosixPath(entry)
            if not path.is_absolute() or ".." in path.parts or path == PurePosixPath("/"):
                raise ValueError(f"{entry!r} must be an absolute host path without '..' (and not '/')")
        return value
