"""The test harness: the files that decide what "passing" means, always taken from the base commit.

A gate's verdict depends on more than the code under test: conftest.py hooks, the test runner's
configuration (pytest.ini, tox.ini, setup.cfg, pyproject's `[tool.pytest]`, `-p` plugins in addopts),
helper modules and expected-output data under the test directories, the script or Makefile the gate
command names, a differential gate's inputs. If the agent could change any of them, it could change
the meaning of "passing" instead of the code. So:

- `Harness.is_harness(path)` says which paths are harness (defaults below, plus `gates.NAME.harness`
  globs, the repository files a gate's argv names, and differential gates' `inputs`);
- the diff audit refuses any change to an existing harness file, and (with `policy.harness =
  "protected"`, the default) any new one (`harness_breaches`). Files that hold harness *sections*
  among other things (pyproject.toml, setup.cfg, package.json) are compared section by section;
- when a gate runs, `gate_tree` builds the tree it runs on: the candidate commit with every harness
  file put back to its base version, and harness files the agent added dropped, unless the policy
  extends the harness (new test files, helpers and data are then kept; new conftest.py and test
  configuration files still are not, unless `policy.new_conftest`). The audit makes this a no-op for
  honest runs; it is the defence in depth for whatever the audit did not recognise.

What is a test directory: a path segment named tests, test, testing, __tests__, spec or testdata.
Under them, every file that is not itself a collected test file is harness (helpers, fixtures,
snapshots, golden outputs, `__init__.py`). Test files themselves are not harness: the agent may add
them, and the audit judges changes to existing ones (deleted, skipped, weakened, expectations changed).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import subprocess
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from onloop.config import Config, GateConfig
from onloop.errors import WorkspaceError
from onloop.policy.audit import is_test_path
from onloop.policy.model import glob_match

TEST_DIRS = frozenset({"tests", "test", "testing", "__tests__", "spec", "testdata"})
# Whole files that configure or extend a test runner: taken from the base, never loaded when new.
CONFIG_GLOBS = (
    # pytest's own configuration files, in any directory: pytest looks for them upward from its
    # arguments, so one in tests/ wins over the root's (pytest 9 reads pytest.toml first).
    "**/conftest.py", "**/pytest.ini", "**/.pytest.ini", "**/pytest.toml", "**/.pytest.toml", "**/tox.ini",
    "noxfile.py",
    "**/jest.config.*", "**/vitest.config.*", "**/vitest.workspace.*", "**/karma.conf.*", "**/.mocharc*",
    "**/jasmine.json", "**/.coveragerc",
    # What makes Python import or autoload code without the tests naming it: installed-package
    # metadata (a pytest11 entry point under a *.dist-info on sys.path is loaded by pytest itself),
    # path files, editable-install finders.
    "**/*.dist-info/**", "**/*.egg-info/**", "**/*.pth", "**/*.egg-link", "**/__editable__*",
    # Attributes change the bytes a checkout writes (eol, working-tree-encoding): an expected-output
    # file from the base could otherwise reach the gate converted.
    ".gitattributes", "**/.gitattributes",
    # Linters' and type checkers' own configuration: what a lint or type gate refuses.
    "**/ruff.toml", "**/.ruff.toml", "**/mypy.ini", "**/.mypy.ini", "**/.flake8", "**/.pylintrc", "**/pylintrc",
    "**/pyrightconfig.json", "**/.eslintrc*", "**/eslint.config.*", "**/tsconfig*.json", "**/jsconfig.json",
    "**/biome.json", "**/biome.jsonc", "**/.golangci.y*ml", "**/.golangci.toml", "**/clippy.toml",
    "**/.clippy.toml", "**/.pre-commit-config.yaml",
)
# Files that hold harness sections among other things: (file name, sections) compared after parsing.
SECTIONED = ("pyproject.toml", "setup.cfg", "package.json", "Cargo.toml")
_PYPROJECT_SECTIONS = (("tool", "pytest"), ("tool", "coverage"), ("tool", "tox"), ("tool", "hatch", "envs"),
                       ("tool", "ruff"), ("tool", "mypy"), ("tool", "pyright"), ("tool", "pylint"), ("tool", "flake8"),
                       ("tool", "black"), ("tool", "isort"), ("tool", "basedpyright"))
_SETUP_CFG_PREFIXES = ("tool:pytest", "coverage:", "pytest", "mypy", "flake8", "pylint", "isort", "pycodestyle")
_PACKAGE_JSON_KEYS = ("jest", "mocha", "ava", "vitest", "c8", "nyc", "eslintConfig", "prettier")
_CARGO_SECTIONS = (("lints",), ("workspace", "lints"))
_RUNNER_PROGRAMS = frozenset({"npm", "yarn", "pnpm", "bun", "npx"})


@dataclass(frozen=True, slots=True)
class Harness:
    """Which paths are harness, for the gates of one run."""

    globs: tuple[str, ...] = ()  # whole files, beyond the defaults
    programs: tuple[str, ...] = ()  # the repository's programs the gates run (scripts, Makefiles), among globs
    specs_dir: str = "specs"  # onloop's canon specs (markdown) are not a test directory
    extend: bool = False  # policy.harness == "extend"
    new_config: bool = False  # policy.new_conftest

    def is_harness(self, path: str) -> bool:
        return self.is_config(path) or self._in_test_dir(path) or any(glob_match(g, path) for g in self.globs)

    def is_config(self, path: str) -> bool:
        """Files that configure or extend the runner (conftest.py, pytest.ini, ...)."""
        return any(glob_match(g, path) for g in CONFIG_GLOBS)

    def _in_test_dir(self, path: str) -> bool:
        parts = PurePosixPath(path).parts
        if not parts or parts[0] == self.specs_dir.strip("/"):
            return False
        return any(part in TEST_DIRS for part in parts[:-1]) and not is_test_path(path)

    def keeps_new(self, path: str) -> bool:
        """Whether a harness file the agent added is kept in the gate's checkout."""
        if not self.extend:
            return False
        return self.new_config or not self.is_config(path)


def harness_for(config: Config, base_paths: Iterable[str] = (), read: Reader | None = None) -> Harness:
    """The run's harness: defaults, every gate's `harness` and `inputs` globs, and the programs of the
    repository the gates run (a test script, the Makefile of `make test`, and what those run in turn,
    read with `read(path)` from the base commit)."""
    globs: list[str] = []
    programs: list[str] = []
    known = set(base_paths)
    for gate in config.gates.values():
        globs += gate.harness + gate.inputs
        programs += named_files(gate, known, read)
    policy = config.policy
    return Harness(tuple(dict.fromkeys(globs + programs)), tuple(dict.fromkeys(programs)), config.context.specs,
                   policy.harness == "extend", policy.new_conftest)


Reader = Callable[[str], "str | None"]
_INTERPRETERS = frozenset({"sh", "bash", "zsh", "dash", "node", "ruby", "perl", "bun", "deno", "pwsh", "env"})
_PYTHON = re.compile(r"python[\d.]*$")
_SEPARATORS = re.compile(r"&&|\|\||[;|&]|\$\(|`")
_MAX_HARNESS_FILES = 64


def named_files(gate: GateConfig, known: set[str], read: Reader | None = None) -> list[str]:
    """The programs of the repository a gate runs: its argv's program (a script, or the script an
    interpreter is given), the Makefiles of `make`, and, read through `read`, the programs those files
    run in turn. Operands are not programs: `mypy src/app.py` does not make src/app.py harness. (A
    differential gate's reference and candidate are not harness either: the reference runs on the base
    commit anyway, and the candidate is the work.)"""
    argv = gate.command or []
    found = _programs(argv, known)
    if argv and PurePosixPath(argv[0]).name in ("make", "gmake"):
        found += [path for path in known if PurePosixPath(path).name in ("Makefile", "makefile", "GNUmakefile")
                  or path.endswith(".mk")]
    if read is None:
        return found
    queue, seen = list(found), set(found)
    while queue and len(seen) < _MAX_HARNESS_FILES:
        text = read(queue.pop(0))
        for program in _programs_in_text(text or "", known):
            if program not in seen:
                seen.add(program)
                queue.append(program)
    return sorted(seen)


def _programs(tokens: Sequence[str], known: set[str]) -> list[str]:
    """The repository file a command runs: its program, or the script operand of an interpreter."""
    if not tokens:
        return []
    head = tokens[0].lstrip("@-+").removeprefix("./")
    if head in known:
        return [head]
    name = PurePosixPath(head).name
    if not (_PYTHON.match(name) or name in _INTERPRETERS):
        return []
    for token in tokens[1:]:
        if token in ("-m", "-c", "-e"):
            return []
        if token.startswith("-") or "=" in token:
            continue
        path = token.removeprefix("./")
        return [path] if path in known else _programs(tokens[tokens.index(token):], known) if name == "env" else []
    return []


def _programs_in_text(text: str, known: set[str]) -> list[str]:
    """The programs the command lines of a script, Makefile recipe or config run."""
    found: list[str] = []
    for line in text.splitlines():
        for command in _SEPARATORS.split(line.strip().lstrip("\t")):
            try:
                tokens = shlex.split(command, comments=True)
            except ValueError:
                continue
            found += _programs(tokens, known)
    return found


# -- the audit side: what the agent may not change ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HarnessChange:
    path: str
    evidence: str


def harness_breaches(harness: Harness, changes: Sequence[tuple[str, str | None, str | None]],
                     in_base: Mapping[str, bool]) -> list[HarnessChange]:
    """`changes` are (path, content at base or None, content now or None) of paths this iteration
    touched; `in_base[path]` says whether the base commit has the path."""
    found = []
    for path, before, after in changes:
        if PurePosixPath(path).name in SECTIONED and not harness.is_harness(path):
            evidence = section_change(path, before, after)
            if evidence:
                found.append(HarnessChange(path, evidence))
            continue
        if not harness.is_harness(path):
            continue
        if in_base.get(path, False):
            verb = "deleted" if after is None else "changed"
            found.append(HarnessChange(path, f"harness file {verb}: the gates take it from the base commit"))
        elif after is not None and not harness.keeps_new(path):
            why = "policy.harness = \"protected\"" if not harness.extend else "policy.new_conftest = false"
            found.append(HarnessChange(path, f"new harness file ({why}): gates do not load it"))
    return found


def section_change(path: str, before: str | None, after: str | None) -> str | None:
    """The harness sections of pyproject.toml, setup.cfg or package.json that differ, or None."""
    name = PurePosixPath(path).name
    old, new = _sections(name, before), _sections(name, after)
    if old is None or new is None:
        # Unparsable now (or then): the runner may read it differently; a change of the file counts.
        return None if before == after else f"{name} cannot be parsed; its test sections may have changed"
    changed = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
    return f"test configuration changed: {', '.join(changed)}" if changed else None


def _sections(name: str, text: str | None) -> dict[str, Any] | None:
    if text is None:
        return {}
    try:
        if name == "pyproject.toml":
            return _pyproject_sections(tomllib.loads(text))
        if name == "setup.cfg":
            return _setup_cfg_sections(text)
        if name == "package.json":
            return _package_json_sections(json.loads(text))
        if name == "Cargo.toml":
            return _table_sections(tomllib.loads(text), _CARGO_SECTIONS)
    except (tomllib.TOMLDecodeError, ValueError, configparser.Error):
        return None
    return {}


def _pyproject_sections(data: dict[str, Any]) -> dict[str, Any]:
    return _table_sections(data, _PYPROJECT_SECTIONS)


def _table_sections(data: dict[str, Any], sections: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for keys in sections:
        node: Any = data
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            found[".".join(keys)] = node
    return found


def _setup_cfg_sections(text: str) -> dict[str, Any]:
    parser = configparser.RawConfigParser(strict=False)
    parser.read_string(text)
    return {section: dict(parser.items(section)) for section in parser.sections()
            if section.startswith(_SETUP_CFG_PREFIXES)}


def _package_json_sections(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {"<root>": data}
    found = {key: data[key] for key in _PACKAGE_JSON_KEYS if key in data}
    scripts = data.get("scripts")
    for key, value in (scripts.items() if isinstance(scripts, dict) else ()):
        if "test" in key:  # test, pretest, posttest, test:unit ...
            found[f"scripts.{key}"] = value
    return found


# -- the gate side: the tree a gate runs on ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GateTree:
    tree: str  # the tree sha the gates run on
    restored: tuple[str, ...]  # harness files put back to their base version
    dropped: tuple[str, ...]  # harness files the agent added that the gates do not load


def gate_tree(git_dir: str, base: str, candidate: str, harness: Harness) -> GateTree:
    """`candidate` with the harness from `base`: the tree sha, and what had to be changed."""
    updates: list[str] = []
    restored: list[str] = []
    dropped: list[str] = []
    for old_mode, old_sha, new_mode, status, path in _tree_diff(git_dir, base, candidate):
        del new_mode
        if not harness.is_harness(path):
            continue
        if status == "A":
            if not harness.keeps_new(path):
                updates.append(f"0 {'0' * 40}\t{path}")
                dropped.append(path)
        else:  # modified, type-changed or deleted: the base version comes back
            updates.append(f"{old_mode} {old_sha}\t{path}")
            restored.append(path)
    tree = _git(git_dir, "rev-parse", f"{candidate}^{{tree}}").strip()
    if updates:
        tree = _rewrite(git_dir, candidate, updates)
    return GateTree(tree, tuple(restored), tuple(dropped))


def _tree_diff(git_dir: str, base: str, candidate: str) -> list[tuple[str, str, str, str, str]]:
    """(old mode, old sha, new mode, status, path) of every path that differs, renames split."""
    out = _git(git_dir, "diff-tree", "-r", "-z", "--no-renames", "--no-commit-id", base, candidate)
    fields = out.split("\0")
    entries = []
    for i in range(0, len(fields) - 1, 2):
        meta, path = fields[i], fields[i + 1]
        if not meta.startswith(":"):
            break
        old_mode, new_mode, old_sha, _new_sha, status = meta[1:].split(" ")
        entries.append((old_mode, old_sha, new_mode, status[:1], path))
    return entries


def _rewrite(git_dir: str, candidate: str, updates: list[str]) -> str:
    """The candidate's tree with `updates` (index-info lines) applied, through a throwaway index."""
    with tempfile.TemporaryDirectory(prefix="onloop-gate-tree-") as scratch:
        env = {"GIT_INDEX_FILE": os.path.join(scratch, "index")}
        _git(git_dir, "read-tree", candidate, env=env)
        _git(git_dir, "update-index", "-z", "--index-info", env=env, input_text="\0".join(updates) + "\0")
        return _git(git_dir, "write-tree", env=env).strip()


def _git(git_dir: str, *args: str, env: dict[str, str] | None = None, input_text: str | None = None) -> str:
    full = {**os.environ, "GIT_DIR": git_dir, **(env or {})}
    full.pop("GIT_WORK_TREE", None)
    done = subprocess.run(["git", *args], env=full, capture_output=True, text=True, input=input_text, timeout=300)
    if done.returncode != 0:
        raise WorkspaceError(f"git {args[0]} failed building the gate's tree: {done.stderr.strip()[:300]}")
    return done.stdout
