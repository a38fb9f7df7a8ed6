"""What a sandboxed process can see, and whether the programs a run starts are in that view.

The sandbox (`onloop.policy.sandbox`) shows a process the system directories, the run's checkout,
`policy.readable` and the interpreter onloop runs on, and lays empty tmpfs over /tmp, /root, /home,
the user's home and ONLOOP_HOME. A program that lives anywhere else works on the host and fails
inside, far from the cause: a gate "broken" at baseline with `prlimit: failed to execute python`, an
agent that "failed" with no output. So before a run starts, every program it will start (each gate's
argv[0], each CLI backend's executable) is resolved the way the kernel resolves it inside: on the
PATH the process gets, through every symlink, and for a script through its `#!` interpreter
(`#!/usr/bin/env python3` looks `python3` up on that PATH too). Each step is checked against the
sandbox's own layers (`BwrapSandbox.mounts`, the same ones `mount_args` hands bwrap): a path is
shown by the last layer at or above it; a directory on the way to a later visible layer exists even
in a hidden area (bwrap creates mount points); anything under no layer is absent.

Relative programs (`./run-tests.sh`, `.venv/bin/python`) resolve in the run's checkout, which holds
the repository's committed files only: gates run in a clean checkout of the commit and the agent in a
fresh worktree, so an untracked `.venv` is not there at all. The checkout does not exist before the
run, so the view shows the workspace's files at a stand-in path (`CHECKOUT`); an absolute path into
the workspace is then not visible, as in a real run, where the checkout lies elsewhere.

Not checked: what a program opens once it runs (a script's own commands, shared libraries, what a
pyenv shim execs), and the executables of plugin backend kinds, which onloop cannot know. A CLI
backend whose binary is not installed at all is left to the backend, which says so when it starts.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Literal

from onloop.config import Config
from onloop.errors import ConfigError
from onloop.policy.model import Policy
from onloop.policy.sandbox import DEFAULT_PATH, BwrapSandbox, Mount
from onloop.process import ProcessSpec

CHECKOUT = Path("/onloop-run/checkout")  # where the view shows the run's checkout (it does not exist yet)
INSTALL_ELSEWHERE = "or install it under /usr/local or /opt"
CLI_BINARIES = {"claude_code": "claude", "codex": "codex", "aider": "aider", "opencode": "opencode", "command": ""}
_MAX_LINKS = 40  # the kernel's limit on symlinks in one lookup
_MAX_SCRIPTS = 4  # the kernel's limit on nested `#!` interpreters
_SHEBANG_BYTES = 256
_READABLE_FIX_TAGS = ("tmpfs", "home")  # hidden areas that policy.readable may open up, path by path

Kind = Literal["hidden", "absent", "missing", "not-executable", "loop", "not-committed", "not-on-path"]


# -- the view ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Found:
    """A path that exists in the view: where it is inside, and the host file shown there."""

    path: Path
    host: Path


@dataclass(frozen=True, slots=True)
class Blocked:
    """Why a path cannot be reached inside. `wanted` is the full path being looked up when the lookup
    stopped at `at` (after the links followed from `start`), `mount` the layer that hides `at`."""

    kind: Kind
    start: Path
    wanted: Path
    at: Path
    mount: Mount | None = None
    step: str = ""  # how the program got here: "./run.sh needs its interpreter (#!/x/python3)"
    searched: str = ""  # the bare name looked up on the PATH, when this is why it was not found there
    path_env: str = ""


@dataclass(frozen=True)
class View:
    """The file system a sandboxed process sees, as the sandbox's layers in mount order."""

    mounts: tuple[Mount, ...]
    cwd: Path = CHECKOUT  # where the process starts: its checkout

    def locate(self, path: Path) -> Found | Blocked:
        """Resolve `path` component by component as the kernel would inside, following every link."""
        start = path if path.is_absolute() else self.cwd / path
        parts = list(start.parts[1:])
        current, links = Path("/"), 0
        while parts:
            name = parts.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                current = current.parent
                continue
            candidate = current / name
            index, mount = self._layer(candidate)
            host = mount.host_path(candidate) if mount is not None and mount.visible else None
            info = _lstat(host) if host is not None else None
            if info is None:
                if self._on_the_way(candidate, index):
                    current = candidate
                    continue
                kind: Kind = "missing" if host is not None else "hidden" if mount is not None else "absent"
                return Blocked(kind, start, _joined(candidate, parts), candidate, mount if kind == "hidden" else None)
            if stat.S_ISLNK(info.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    return Blocked("loop", start, _joined(candidate, parts), candidate)
                assert host is not None
                target = PurePosixPath(os.readlink(host))
                parts = [*target.parts[1:], *parts] if target.is_absolute() else [*target.parts, *parts]
                current = Path("/") if target.is_absolute() else current
                continue
            current = candidate
        return Found(current, self.host_of(current))

    def host_of(self, path: Path) -> Path:
        _, mount = self._layer(path)
        return mount.host_path(path) if mount is not None else path

    def hidden_roots(self) -> frozenset[Path]:
        return frozenset(m.path for m in self.mounts if not m.visible)

    def show(self, path: Path) -> str:
        return shown(path)

    def _layer(self, path: Path) -> tuple[int, Mount | None]:
        for index in range(len(self.mounts) - 1, -1, -1):
            if path.is_relative_to(self.mounts[index].path):
                return index, self.mounts[index]
        return -1, None

    def _on_the_way(self, path: Path, covered_by: int) -> bool:
        """`path` is a directory bwrap creates to reach a visible mount point applied after the layer
        that covers it."""
        return any(m.visible and m.path != path and m.path.is_relative_to(path)
                   for m in self.mounts[covered_by + 1:])


def shown(path: Path) -> str:
    """A path of the view as the operator knows it: one in the run's checkout relative to the repository."""
    if path.is_relative_to(CHECKOUT):
        return "./" + path.relative_to(CHECKOUT).as_posix() if path != CHECKOUT else "the repository"
    return str(path)


def sandbox_view(policy: Policy, checkout: Path, *, at: Path = CHECKOUT, readable: Sequence[Path] = ()) -> View:
    """The view of a process of this policy whose checkout holds the files of `checkout`, shown at
    `at` (the run's checkout does not exist before the run; pass `at=checkout` for a real sandbox
    rooted there). `readable` adds paths to `policy.readable`. With the sandbox off, the host."""
    checkout = checkout.resolve()
    if policy.sandbox == "none":
        return View((Mount(Path("/"), True, "host"), Mount(at, True, "worktree", source=checkout)), at)
    with_readable = policy.model_copy(update={"readable": [*policy.readable, *map(str, readable)]})
    box = BwrapSandbox(with_readable, checkout, None, read_only_root=True)
    mounts = box.mounts(ProcessSpec(argv=(), cwd=checkout))
    return View(tuple(replace(m, path=at, source=m.path) if m.why == "worktree" and at != checkout else m
                      for m in mounts), at)


def process_path(policy: Policy, env: Mapping[str, str] | None = None) -> str:
    """The PATH an agent or gate process gets (its spec's `env` over the policy's `env_allow`)."""
    extra = dict(env or {})
    if policy.sandbox == "none":
        passed = {name: os.environ[name] for name in policy.env_allow if name in os.environ}
        return {**passed, **extra}.get("PATH", os.defpath)
    box = BwrapSandbox(policy, Path("/"), None)
    return box.env_for(ProcessSpec(argv=(), cwd=Path("/"), env=extra)).get("PATH", DEFAULT_PATH)


# -- programs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Program:
    """A program a run starts: who starts it, the config key naming it, argv[0], and its PATH."""

    owner: str  # "gate 'tests'", "backend 'agent'"
    key: str  # "gates.tests.command"
    name: str  # argv[0] as configured; a bare name is looked up on `path`
    path: str


@dataclass(frozen=True, slots=True)
class Resolution:
    """A program found inside: the files the kernel executes, the program first, interpreters after."""

    program: Program
    files: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """A program the sandbox would not let start, why, and what fixes it."""

    program: Program
    reason: str
    readable: tuple[Path, ...] = ()  # paths that, added to policy.readable, make it visible
    fix: str = ""  # the fix when policy.readable is not it, or what is left to fix after it

    def message(self, policy_readable: Sequence[str] = ()) -> str:
        p = self.program
        text = f"{p.key}: {p.owner} cannot start `{p.name}` inside the sandbox: {self.reason}."
        if self.readable:
            fix = f"{readable_line(policy_readable, self.readable)} under [policy] in onloop.toml, {INSTALL_ELSEWHERE}"
            return f"{text} Fix: {fix}" + (f"; then {self.fix}." if self.fix else ".")
        return f"{text} Fix: {self.fix}." if self.fix else text


def readable_line(current: Sequence[str], added: Sequence[Path]) -> str:
    """The `readable = [...]` line to put under [policy]: what is there already, and what is missing."""
    entries = list(dict.fromkeys([*current, *map(str, added)]))
    return "readable = [" + ", ".join(f'"{entry}"' for entry in entries) + "]"


class VisibilityError(ConfigError):
    """Programs a run would start are not visible inside the sandbox: refused before the run exists."""

    def __init__(self, problems: Sequence[Problem], policy_readable: Sequence[str] = ()) -> None:
        self.problems = tuple(problems)
        lines = [problem.message(policy_readable) for problem in self.problems]
        added = [path for problem in self.problems for path in problem.readable]
        if len(self.problems) > 1 and added:
            lines.append(f"All at once: {readable_line(policy_readable, added)} under [policy] in onloop.toml.")
        head = (f"{len(self.problems)} program(s) the run would start cannot be seen inside the sandbox "
                "(`onloop policy check` shows what it sees):")
        super().__init__("\n  ".join([head, *lines]))


def require_visible(config: Config, workspace: Path) -> None:
    """Raise VisibilityError unless every program the run starts resolves inside the sandbox."""
    problems = [r for r in check_config(config, workspace) if isinstance(r, Problem)]
    if problems:
        raise VisibilityError(problems, config.policy.readable)


def check_config(config: Config, workspace: Path) -> list[Resolution | Problem]:
    """Every program `config` makes a run start, resolved in the sandbox's view of `workspace`'s
    checkout: a Resolution, or one Problem or more (a relative program must be committed, too)."""
    results: list[Resolution | Problem] = []
    for program in configured_programs(config):
        results.append(check_program(config.policy, workspace, program))
        if "/" in program.name and not program.name.startswith("/") and not _committed(workspace, program.name):
            results.append(Problem(program, f"{program.name} is not committed: a run starts from a fresh checkout "
                                   "of HEAD, which holds only committed files (an untracked or ignored .venv is not "
                                   "there)", fix="commit it, or run a program installed on the system PATH"))
    return results


def configured_programs(config: Config) -> list[Program]:
    """argv[0] of every command and differential gate, and the executable of the run's backends of a
    CLI kind (`command`, or the CLI's binary on onloop's PATH as the backend finds it)."""
    path = process_path(config.policy)
    programs = []
    for name, gate in config.gates.items():
        fields = {"command": ("command",), "differential": ("reference", "candidate")}.get(gate.kind, ())
        for field in fields:
            argv = getattr(gate, field)
            if argv:
                programs.append(Program(f"gate {name!r}", f"gates.{name}.{field}", argv[0], path))
    for name in dict.fromkeys(filter(None, (config.run.backend, config.run.fallback_backend))):
        backend = config.backend_config(name)
        options = backend.model_dump()
        found = _backend_executable(backend.kind, options)
        if found is not None:
            env = options.get("env") if isinstance(options.get("env"), dict) else None
            key = f"backends.{name}.command" if options.get("command") else f"backends.{name}"
            programs.append(Program(f"backend {name!r}", key, found, process_path(config.policy, env)))
    return programs


def _backend_executable(kind: str, options: Mapping[str, object]) -> str | None:
    if kind == "scripted":
        return sys.executable
    if kind not in CLI_BINARIES:
        return None  # the built-in agent runs in onloop; a plugin kind's executable is its own business
    command = options.get("command")
    if isinstance(command, list) and command:
        return str(command[0])
    return shutil.which(CLI_BINARIES[kind]) if CLI_BINARIES[kind] else None


def check_program(policy: Policy, checkout: Path, program: Program, *, at: Path = CHECKOUT) -> Resolution | Problem:
    """`program` resolved in the view, or the problem with it and the policy.readable entries that
    would fix it (found by adding one opening at a time until the program resolves)."""
    view = sandbox_view(policy, checkout, at=at)
    first = resolve(view, program)
    if isinstance(first, Resolution):
        return first
    reason, added, blocked = describe(view, first), [], first
    inside = _in_workspace(first, checkout.resolve()) if at != checkout else None
    if inside is not None:
        return Problem(program, f"{reason}; a run works in a checkout of its own, not in the workspace",
                       fix=f"name it relative to the repository in {program.key}: ./{inside}")
    for _ in range(_MAX_SCRIPTS * 2):
        opening = _readable_for(view, blocked)
        if opening is None or opening in added:
            break
        added.append(opening)
        view = sandbox_view(policy, checkout, at=at, readable=added)
        again = resolve(view, program)
        if isinstance(again, Resolution):
            return Problem(program, reason, tuple(added))
        blocked = again
    if blocked == first:
        return Problem(program, reason, fix=fix_for(first, program))
    # Opening what could be opened leaves a step that policy.readable cannot fix: name both.
    later = describe(view, blocked)
    return Problem(program, f"{reason}; beyond that, {later}", tuple(added), fix_for(blocked, program))


def resolve(view: View, program: Program) -> Resolution | Blocked:
    """What the kernel would execute for `program` inside `view`, or the first step that fails."""
    if "/" in program.name:
        files = _execute(view, Path(program.name), program.path, depth=0)
    else:
        files = _on_path(view, program.name, program.path, depth=0)
    return files if isinstance(files, Blocked) else Resolution(program, files)


def _execute(view: View, path: Path, path_env: str, *, depth: int) -> tuple[Path, ...] | Blocked:
    located = view.locate(path)
    if isinstance(located, Blocked):
        return located
    if not _executable_file(located.host):
        return Blocked("not-executable", path, located.path, located.path)
    line = _shebang(located.host)
    if line is None:
        return (located.path,)
    if depth + 1 >= _MAX_SCRIPTS:
        return Blocked("loop", path, located.path, located.path)
    interpreter, _, argument = line.partition(" ")
    found = _execute(view, Path(interpreter), path_env, depth=depth + 1)
    if isinstance(found, Blocked):
        return replace(found, step=found.step or f"{view.show(located.path)} needs its interpreter (#!{line})")
    runs = _env_program(argument) if PurePosixPath(interpreter).name == "env" else None
    if runs is None:
        return (located.path, *found)
    target = _execute(view, Path(runs), path_env, depth=depth + 1) if "/" in runs else \
        _on_path(view, runs, path_env, depth=depth + 1)
    if isinstance(target, Blocked):
        return replace(target, step=target.step or f"{view.show(located.path)} runs `{runs}` through #!{line}")
    return (located.path, *found, *target)


def _on_path(view: View, name: str, path_env: str, *, depth: int) -> tuple[Path, ...] | Blocked:
    """execvp's search: the first PATH entry whose `name` starts (a file whose interpreter is missing
    fails with ENOENT there, and the search goes on, as execvp's does)."""
    first: Blocked | None = None
    for entry in path_env.split(":"):
        directory = Path(entry) if entry.startswith("/") else view.cwd / entry
        found = _execute(view, directory / name, path_env, depth=depth)
        if not isinstance(found, Blocked):
            return found
        if first is None and entry.startswith("/") and os.path.lexists(Path(entry) / name):
            first = found  # the host has it there: why it is not there inside is what the operator needs
    if first is not None:
        return first if first.step else replace(first, searched=name, path_env=path_env)
    return Blocked("not-on-path", Path(name), Path(name), Path(name), searched=name, path_env=path_env)


# -- explaining ------------------------------------------------------------------------------------


def describe(view: View, blocked: Blocked) -> str:
    """Why the lookup stopped, in the operator's words: where, and what hides it."""
    if blocked.kind == "not-on-path":
        return (f"there is no `{blocked.searched}` on the PATH, inside the sandbox or on this host "
                f"(PATH={blocked.path_env})")
    wanted = view.show(blocked.wanted)
    start = view.show(Path(os.path.normpath(blocked.start)))
    subject = wanted if start == wanted else f"{start} resolves to {wanted}, and that"
    clause = f"{subject} {_why(blocked)}"
    if blocked.searched:
        clause = (f"`{blocked.searched}` is not on the PATH inside the sandbox (PATH={blocked.path_env}): "
                  f"the host's {clause}")
    return f"{blocked.step}: {clause}" if blocked.step else clause


def _why(blocked: Blocked) -> str:
    if blocked.kind == "missing":
        return "does not exist"
    if blocked.kind == "not-executable":
        return "is not an executable file"
    if blocked.kind == "loop":
        return "goes through too many links or nested #! interpreters"
    if blocked.kind == "absent":
        return ("is outside every directory the sandbox shows (the system dirs such as /usr and /opt, the "
                "run's checkout, policy.readable)")
    mount = blocked.mount
    assert mount is not None
    where = mount.path
    return {
        "tmpfs": f"is under {where}, which the sandbox replaces with an empty tmpfs",
        "home": f"is under your home directory {where}, which the sandbox replaces with an empty tmpfs",
        "onloop-home": f"is under ONLOOP_HOME ({where}), which the sandbox replaces with an empty tmpfs",
        "policy.hidden": f"is under {where}, which policy.hidden hides",
        "etc-secret": f"is {where}, a root-only file the sandbox masks",
    }.get(mount.why, f"is under {where}, which the sandbox hides")


def fix_for(blocked: Blocked, program: Program) -> str:
    """The fix when opening a path with policy.readable is not it."""
    if blocked.kind == "not-on-path":
        return f"install it on the system PATH, or name it by its full path in {program.key}"
    if blocked.kind == "missing":
        return f"correct {program.key}, or install what it names"
    if blocked.kind == "not-executable":
        return "make it executable (chmod +x, and commit the mode)"
    if blocked.wanted.parent.name == "shims":
        return (f"a version manager's shim (pyenv, asdf, ...) runs only with the manager's whole root: point "
                f"{program.key} at the interpreter itself (`pyenv which python` names it) and make its prefix "
                f"readable, {INSTALL_ELSEWHERE}")
    if blocked.mount is not None and blocked.mount.why == "policy.hidden":
        return f"take {blocked.mount.path} out of policy.hidden, {INSTALL_ELSEWHERE}"
    if blocked.mount is not None and blocked.mount.why == "onloop-home":
        return f"move it out of ONLOOP_HOME, {INSTALL_ELSEWHERE}"
    return f"install it under /usr/local or /opt, or point {program.key} at a copy there"


def _readable_for(view: View, blocked: Blocked) -> Path | None:
    """The path to add to policy.readable that shows `blocked.wanted`: its directory (the prefix above
    a bin dir, where a toolchain keeps its lib too), or the file itself where the directory would be
    a whole hidden area. None when policy.readable cannot help."""
    hidden = blocked.kind == "hidden" and blocked.mount is not None and blocked.mount.why in _READABLE_FIX_TAGS
    wanted = blocked.wanted
    if not (hidden or blocked.kind == "absent") or not os.path.lexists(wanted) or wanted.is_relative_to(CHECKOUT):
        return None
    if wanted.parent.name == "shims":
        return None  # the shim would be visible and still fail: it execs the manager's own tools
    directory = wanted.parent.parent if wanted.parent.name in ("bin", "sbin") else wanted.parent
    roots = view.hidden_roots()
    too_wide = len(directory.parts) <= 2 or any(root.is_relative_to(directory) for root in roots)
    return wanted if too_wide else directory


def _in_workspace(blocked: Blocked, workspace: Path) -> str | None:
    """The path in the workspace that an absolute name of a program (or a link) points at, if so."""
    if blocked.kind in ("hidden", "absent") and blocked.wanted.is_relative_to(workspace):
        return blocked.wanted.relative_to(workspace).as_posix()
    return None


def _committed(workspace: Path, name: str) -> bool:
    """Whether `name` (relative to the repository) is a file of the workspace's HEAD; True when the
    workspace is no git repository (then nothing can be said)."""
    git = ["git", "-C", str(workspace)]
    if subprocess.run([*git, "rev-parse", "--verify", "-q", "HEAD"], capture_output=True, timeout=30).returncode:
        return True
    done = subprocess.run([*git, "cat-file", "-e", f"HEAD:./{os.path.normpath(name)}"], capture_output=True, timeout=30)
    return done.returncode == 0


def _env_program(argument: str) -> str | None:
    """The program `#!/usr/bin/env [-S] [-i] [NAME=value...] program [args]` runs."""
    for word in argument.split():
        if word.startswith("-") or "=" in word:
            continue
        return word
    return None


def _shebang(host: Path) -> str | None:
    """The `#!` line of a script (interpreter and its one argument, as the kernel splits it), or None."""
    try:
        with host.open("rb") as handle:
            head = handle.read(_SHEBANG_BYTES)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    interpreter, _, argument = line.replace("\t", " ").partition(" ")
    return f"{interpreter} {argument.strip()}".strip() if interpreter else None


def _executable_file(host: Path) -> bool:
    try:
        return stat.S_ISREG(host.stat().st_mode) and os.access(host, os.X_OK)
    except OSError:
        return False


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except OSError:
        return None


def _joined(path: Path, rest: Sequence[str]) -> Path:
    return Path(os.path.normpath(path.joinpath(*rest))) if rest else path
