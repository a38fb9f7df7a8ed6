"""The gates as the loop runs them: on sealed checkouts, against the baseline, flakiness on evidence.

For every gate run, onloop builds the tree the gate runs on (the committed candidate with the test
harness from the base, `onloop.gates.harness`), resets the run's sealed checkout to exactly that
tree (`onloop.gates.sealed`), and runs the gate there in a sandbox rooted at that checkout: the
agent's worktree is not even mounted. A differential gate's reference runs in a second sealed
checkout, of the base commit, and the candidate cannot see the reference's files.

Flakiness is decided on evidence, not on the word of the code under test: a gate with new failures
is re-run once, identically (same argv, environment and paths); a check that flipped is re-run on
the base commit too, and it is flaky only if it also flips there (its outcome on the base differs
from the baseline's). Otherwise a check that failed in either run is failing. A flaky check is
quarantined for this run only (`onloop.store.quarantine`).
"""

from __future__ import annotations

import ast
import functools
import logging
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from onloop.config import Config
from onloop.errors import WorkspaceError
from onloop.gates.baseline import GateVerdict, compare, tolerance
from onloop.gates.harness import GateTree, Harness, gate_tree, harness_for
from onloop.gates.report import plugin_module_name
from onloop.gates.runner import GateRun, GateSetting, run_gate, run_judge_gate, worst_of
from onloop.gates.sealed import SealedCheckout
from onloop.loop.setup import RunPaths
from onloop.models.metered import Meter
from onloop.policy.sandbox import limits_from_policy
from onloop.process import Sandbox

SandboxFor = Callable[[Path], Sandbox]
log = logging.getLogger(__name__)


LINT_TOOLS = frozenset({"ruff", "flake8", "pylint", "mypy", "pyright", "basedpyright", "eslint", "tsc", "clippy",
                        "golangci-lint"})
# Caches and build output test runners write into the project, writable to gates unless they hold
# tracked files; everything else of the checkout is read-only to them (`gates.NAME.writable`).
DEFAULT_WRITABLE = (".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache", ".tox", ".nox", "target",
                    "build", "node_modules/.cache", "node_modules/.vite", "htmlcov", ".cache")


def _real_directory_path(root: Path, path: Path) -> bool:
    """`path` lies inside `root` and no component of it, from `root` down, is a link (or a non-directory)."""
    if path != root and not path.is_relative_to(root):
        return False
    current = root
    for part in path.relative_to(root).parts:
        if part in ("..", ""):
            return False
        current = current / part
        try:
            info = current.lstat()
        except FileNotFoundError:
            return True  # the rest is made by onloop, as directories
        if not stat.S_ISDIR(info.st_mode):
            return False
    return True


def gate_env(config: Config) -> dict[str, str]:
    """A gate's environment: the agents' (`allowed_env`), with coverage data and bytecode out of the
    read-only checkout ($TMPDIR is private to each gate process)."""
    env = allowed_env(config)
    env.setdefault("COVERAGE_FILE", "/tmp/.coverage")
    env.setdefault("PYTHONPYCACHEPREFIX", "/tmp/pycache")  # py_compile and friends write bytecode there
    return env


def allowed_env(config: Config) -> dict[str, str]:
    """The environment gates and agents get: the policy's allowlist, from onloop's own environment.

    Python is told not to write bytecode caches: nothing a process leaves in a worktree should have to
    be told apart from the agent's work.
    """
    env = {name: os.environ[name] for name in config.policy.env_allow if name in os.environ}
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return env


@dataclass
class Gates:
    """The gates of one run: its sealed checkouts, its harness, and a sandbox per checkout."""

    config: Config
    paths: RunPaths
    git_dir: Path
    base: str
    sandbox_for: SandboxFor
    harness: Harness = field(default_factory=Harness)
    _sandboxes: dict[Path, Sandbox] = field(default_factory=dict)
    _expected: dict[str, frozenset[str] | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.candidate = SealedCheckout(self.git_dir, self.paths.root / "sealed" / "candidate")
        self.reference = SealedCheckout(self.git_dir, self.paths.root / "sealed" / "base")
        self.base_files = frozenset(base_paths(self.git_dir, self.base))
        self.harness = harness_for(self.config, self.base_files, self.read_base)
        self.base_tree = _rev(self.git_dir, f"{self.base}^{{tree}}")
        # One name for onloop's pytest plugin per run (this process's part of it): nothing committed
        # can shadow a name drawn after the commit, and every gate run of the run, a flaky re-run
        # included, sees the same argv.
        self.plugin_module = plugin_module_name()

    @functools.cached_property
    def tools(self) -> frozenset[str]:
        """The lint and type-check tools the gates run: by their argv (program or `-m` module, `cargo
        clippy`, `npx tsc`), their output format, and the words of the repository's programs they run
        (the Makefile of `make lint`, a script), as the base commit has them."""
        found: set[str] = set()
        for gate in self.config.gates.values():
            tokens = [PurePosixPath(token).name for token in gate.command or []]
            found |= {t for t in (*tokens, gate.format) if t in LINT_TOOLS}
        for program in self.harness.programs:
            words = re.findall(r"[\w.-]+", self.read_base(program) or "")
            found |= {PurePosixPath(w).name for w in words} & LINT_TOOLS
        return frozenset(found)

    def read_base(self, path: str) -> str | None:
        done = subprocess.run(["git", "--git-dir", str(self.git_dir), "show", f"{self.base}:{path}"],
                              capture_output=True, timeout=60)
        return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None

    def tree(self, commit: str) -> GateTree:
        """The tree the gates run on for `commit`: its own, with the harness of the base."""
        if commit == self.base:
            return GateTree(self.base_tree, (), ())
        return gate_tree(str(self.git_dir), self.base, commit, self.harness)

    def run_all(self, tree: str, label: str) -> dict[str, GateRun]:
        """Every command and differential gate on `tree`. Judge gates run apart, after these pass."""
        return {name: self.run_one(name, tree, label) for name, gate in self.config.gates.items()
                if gate.kind != "judge"}

    def run_one(self, name: str, tree: str, label: str) -> GateRun:
        gate = self.config.gates[name]
        if gate.kind == "differential":
            return self._differential(name, tree)
        root = self.candidate.prepare(tree)
        binds, private = self._writable(name, root)
        setting = GateSetting(root=root, scratch=self.paths.scratch / "gate", log_dir=self.paths.logs,
                              sandbox=self._sandbox(root), env=gate_env(self.config),
                              limits=limits_from_policy(self.config.policy), plugin_module=self.plugin_module,
                              plugin_home=self.paths.scratch / "plugin", writable=binds, private=private)
        return self._untouched(run_gate(name, gate, setting, label))

    def _writable(self, name: str, root: Path) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
        """The gate's writable directories in its read-only checkout, as (bound, private): a directory
        that holds no tracked file gets an empty private tmpfs (nothing written there outlives the
        process); one the operator lists that holds tracked files is the checkout's own, writable, and
        `_untouched` checks its tracked files afterwards. An entry whose path runs through a link is
        refused: a committed `build -> tests` must not make the tests writable."""
        chosen = self.config.gates[name].writable
        entries = chosen if chosen is not None else [d for d in DEFAULT_WRITABLE if not self._tracks_under(d)]
        binds: list[Path] = []
        private: list[Path] = []
        for entry in entries:
            rel = entry.strip().strip("/") or "."
            path = root if rel == "." else root / rel
            if not _real_directory_path(root, path):
                log.warning("gate %s: writable %r is not a plain directory of the checkout; refused", name, entry)
                continue
            path.mkdir(parents=True, exist_ok=True)
            (binds if rel == "." or self._tracks_under(rel) else private).append(path)
        return tuple(binds), tuple(private)

    def _tracks_under(self, directory: str) -> bool:
        return directory.strip("/") in self._base_dirs

    @functools.cached_property
    def _base_dirs(self) -> frozenset[str]:
        """Every directory that holds a file of the base commit (once per run: asked per gate run)."""
        return frozenset(str(parent) for path in self.base_files for parent in PurePosixPath(path).parents[:-1])

    def _untouched(self, run: GateRun) -> GateRun:
        """A run during which the code under test changed the checkout's tracked files is no result: a
        gate may write only its own directories (and with the sandbox off, this is the only check)."""
        changed = self.candidate.changed_tracked()
        if not changed or run.broken:
            return run
        return replace(run, broken=f"the code under test changed {len(changed)} tracked file(s) of the checkout "
                                   f"while the gate ran: {', '.join(changed[:5])}")

    def _differential(self, name: str, tree: str) -> GateRun:
        from onloop.gates.runner import run_differential_gate

        reference = self.reference.prepare(self.base_tree)
        candidate = self.candidate.prepare(tree)
        return run_differential_gate(name, self.config.gates[name], reference_root=reference, candidate_root=candidate,
                                     reference_sandbox=self._sandbox(reference),
                                     candidate_sandbox=self._sandbox(candidate),
                                     scratch=self.paths.scratch / "differential")

    def expected_tests(self, baseline: GateRun | None) -> dict[str, frozenset[str]]:
        """For each module that failed to collect at baseline (`tests/test_spec.py`, unittest's
        `tests.test_spec`), the test ids its base version defines: what must pass to meet it."""
        found: dict[str, frozenset[str]] = {}
        for check_id in baseline.failing if baseline is not None else ():
            if "::" in check_id:
                continue
            if check_id not in self._expected:
                self._expected[check_id] = _defined_tests(self.git_dir, self.base, check_id, self.base_files)
            tests = self._expected[check_id]
            if tests is not None:
                found[check_id] = tests
        return found

    def _sandbox(self, root: Path) -> Sandbox:
        if root not in self._sandboxes:
            self._sandboxes[root] = self.sandbox_for(root)
        return self._sandboxes[root]

    def close(self) -> None:
        """The end of the run (or of this process's part of it): sandboxes closed, and the sealed
        checkouts removed, so nothing the last gate run left stays on the host (a resume checks them
        out again)."""
        for sandbox in self._sandboxes.values():
            close = getattr(sandbox, "close", None)
            if close is not None:
                close()
        self._sandboxes.clear()
        for checkout in (self.candidate, self.reference):
            try:
                checkout.remove()
            except WorkspaceError as exc:  # the run's outcome stands; the leftover is named for the operator
                log.warning("sealed checkout not removed: %s", exc)


def _defined_tests(git_dir: Path, commit: str, module: str, base_files: frozenset[str]) -> frozenset[str] | None:
    """The test ids a module's file defines at `commit` (by its AST), in the id style of `module`: pytest's
    `path.py::test_x` / `path.py::Class::test_x`, or unittest's `pkg.mod.Class.test_x`. None when the
    module is no file of the commit or does not parse (then its tests cannot be known)."""
    dotted = not module.endswith(".py")
    path = module.replace(".", "/") + ".py" if dotted else module
    if path not in base_files:
        return None
    done = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"], capture_output=True,
                          timeout=60)
    try:
        tree = ast.parse(done.stdout)
    except (SyntaxError, ValueError):
        return None
    ids: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test") and not dotted:
            ids.add(f"{module}::{node.name}")
        elif isinstance(node, ast.ClassDef) and _collected_class(node, unittest_only=dotted):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test"):
                    ids.add(f"{module}.{node.name}.{item.name}" if dotted else f"{module}::{node.name}::{item.name}")
    return frozenset(ids)


def _collected_class(node: ast.ClassDef, *, unittest_only: bool) -> bool:
    """A class whose tests a runner collects: a TestCase subclass (unittest and pytest), or for pytest a
    class named Test*."""
    case = any(ast.unparse(base).endswith("TestCase") for base in node.bases)
    return case or (not unittest_only and node.name.startswith("Test"))


def test_files(baseline: Mapping[str, GateRun], base_files: frozenset[str]) -> frozenset[str]:
    """The files the gates collected tests from on the base commit, whatever their names: a file is a
    test file when a gate runs tests from it (`app/tests.py` under unittest's test*.py pattern), not only
    when its name follows pytest's conventions. From pytest node ids (`path.py::...`) and dotted
    unittest ids (`app.tests.Case.test_x`, matched to a .py file of the base)."""
    found: set[str] = set()
    for run in baseline.values():
        for check in run.checks:
            head = check.check_id.split("::", 1)[0]
            if head in base_files:
                found.add(head)
                continue
            parts = head.split(".")
            for end in range(len(parts) - 1, 0, -1):
                candidate = "/".join(parts[:end]) + ".py"
                if candidate in base_files:
                    found.add(candidate)
                    break
    return frozenset(found)


def run_judges(config: Config, subject: str, meter: Meter | None = None) -> dict[str, GateRun]:
    return {name: run_judge_gate(name, gate, subject, meter) for name, gate in config.gates.items()
            if gate.kind == "judge"}


@dataclass(frozen=True, slots=True)
class Judged:
    """A gate's verdict after any re-runs, the run it stands on, and the checks shown flaky."""

    verdict: GateVerdict
    run: GateRun
    flaky: frozenset[str]
    evidence: str = ""


def judge(gates: Gates, name: str, first: GateRun, tree: str, baseline: GateRun | None, previous: frozenset[str],
          ignore: frozenset[str], label: str) -> Judged:
    """`first` compared with the baseline; new failures earn an identical re-run, and a flip is
    checked on the base commit before anything is called flaky."""
    gate = gates.config.gates[name]
    tolerate = tolerance(gate.tolerate, gate.tolerate_preexisting)
    expected = gates.expected_tests(baseline)
    first = foreign_plugins(first, baseline, allowed=gates.config.policy.new_conftest)
    verdict = compare(first, baseline, previous, ignore, tolerate, expected)
    if not verdict.new_failures or verdict.broken or gate.kind != "command" or gate.flaky_reruns == 0:
        return Judged(verdict, first, frozenset())
    # The same argv, environment and paths as the first run; only the log file (outside) is named apart.
    second = foreign_plugins(gates.run_one(name, tree, f"{label}-rerun"), baseline,
                             allowed=gates.config.policy.new_conftest)
    merged = worst_of(first, second)
    flipped = frozenset(verdict.new_failures) & first.failing - second.failing
    flaky = _flips_on_base(gates, name, flipped, baseline, gate.flaky_reruns) if flipped and baseline else frozenset()
    evidence = ("failed then passed on the candidate, and flipped on the base commit against the baseline"
                if flaky else "")
    return Judged(compare(merged, baseline, previous, ignore | flaky, tolerate, expected), merged, flaky, evidence)


def foreign_plugins(run: GateRun, baseline: GateRun | None, *, allowed: bool) -> GateRun:
    """A run that loaded a pytest plugin from the project which the base commit's run did not (a module
    named by `pytest_plugins` in a new test file, a registration at run time) is broken: such a plugin
    can rewrite every outcome before any report is made. `policy.new_conftest` allows it."""
    if allowed or baseline is None or run.broken:
        return run
    new = sorted(set(run.plugins) - set(baseline.plugins))
    if not new:
        return run
    return replace(run, broken=f"pytest loaded plugin code the base commit does not load: {', '.join(new[:5])} "
                               "(policy.new_conftest = false)")


def _flips_on_base(gates: Gates, name: str, suspects: frozenset[str], baseline: GateRun, tries: int) -> frozenset[str]:
    """The suspects whose outcome on the base commit, re-run up to `tries` times, differs from the
    baseline's at least once. A check the base does not have cannot be shown flaky there."""
    known = {c.check_id: c.status for c in baseline.checks}
    candidates = {s for s in suspects if s in known}
    flipped: set[str] = set()
    for attempt in range(tries):
        if not candidates - flipped:
            break
        run = gates.run_one(name, gates.base_tree, f"base-rerun-{attempt + 1}")
        if run.broken:
            continue
        now = {c.check_id: c.status for c in run.checks}
        flipped |= {s for s in candidates if now.get(s) is not known[s]}
    return frozenset(flipped)


def base_paths(git_dir: Path, commit: str) -> list[str]:
    out = subprocess.run(["git", "--git-dir", str(git_dir), "ls-tree", "-r", "-z", "--name-only", commit],
                         capture_output=True, text=True, timeout=300)
    return [p for p in out.stdout.split("\0") if p]


def _rev(git_dir: Path, ref: str) -> str:
    out = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", ref], capture_output=True, text=True,
                         timeout=60)
    return out.stdout.strip()


def gate_readable(config: Config) -> list[str]:
    """What gates and agents may read besides the system: the policy's paths, and the interpreter and
    code onloop runs on (gates commonly run them, and the pytest plugin lives there)."""
    import onloop

    return [*config.policy.readable, sys.prefix, str(Path(onloop.__file__).resolve().parent.parent)]
