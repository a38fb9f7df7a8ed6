"""The diff audit: what an iteration changed, checked against the policy before any gate runs.

The lead calls `audit_changes(worktree, base, policy, message=...)` after every iteration. It looks at
exactly what `git add -A && git commit` would record (tracked changes and untracked, non-ignored files),
computed with a *temporary* index (`GIT_INDEX_FILE`, seeded from the real one for its stat cache), so
the worktree's own index is never touched. New blobs land in the object store, which is harmless.

Each `Finding` is small and actionable (kind, path, one line of evidence) and never contains a secret:
evidence goes through `secrets.scrub`. Kinds:

- protected_path       a path matching `policy.protected` was added, changed or deleted
- escape               a symlink pointing outside the worktree, or a hard link (st_nlink > 1)
- test_deleted         a test file removed, or test functions removed from one
- test_skipped         skip/xfail/only/ignore markers added, or test selection narrowed in config
- assertion_weakened   assertions removed or made constant, broad excepts added in tests
- secret               a credential in the diff or in the message (high entropy only: severity warn)
- oversized / binary   a file above the size cap, or NUL bytes in added content

Severity "block" means: roll the iteration back and record an incident; "warn" means record only.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal, TypeGuard

from onloop.errors import WorkspaceError
from onloop.policy.model import Policy, glob_match
from onloop.policy.secrets import find_secrets, scrub

Severity = Literal["block", "warn"]
DEFAULT_MAX_FILE_BYTES = 1_000_000
_GIT_TIMEOUT = 120


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    path: str
    evidence: str
    severity: Severity = "block"

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.evidence}"


@dataclass(frozen=True, slots=True)
class AuditReport:
    findings: tuple[Finding, ...]
    changed: tuple[str, ...]

    @property
    def breached(self) -> bool:
        """True when the iteration must be rolled back."""
        return any(f.severity == "block" for f in self.findings)

    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}

    def summary(self, limit: int = 5) -> str:
        """A short reason to feed to the next iteration (and to the incident record)."""
        lines = [str(f) for f in self.findings[:limit]]
        if len(self.findings) > limit:
            lines.append(f"... and {len(self.findings) - limit} more")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Change:
    """One changed path: status letter (A, M, D, R, T), the path before and after."""

    status: str
    old_path: str | None
    new_path: str | None

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or ""


def audit_changes(
    worktree: Path,
    base: str,
    policy: Policy,
    *,
    message: str = "",
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    test_files: frozenset[str] = frozenset(),
) -> AuditReport:
    """Audit everything that changed in `worktree` since commit `base`, plus `message`. `test_files`:
    files a gate collected tests from at baseline, test files whatever their names (`app/tests.py`)."""
    worktree = worktree.resolve()
    changes = list_changes(worktree, base)
    findings: list[Finding] = []
    for change in changes:
        findings += _audit_one(worktree, base, policy, change, max_file_bytes, test_files)
    if message:
        findings += _secret_findings("<message>", message)
    return AuditReport(findings=tuple(findings), changed=tuple(c.path for c in changes))


def list_changes(worktree: Path, base: str) -> list[Change]:
    """What `git add -A` would commit relative to `base`, read through a throwaway index."""
    real_index = Path(_git(worktree, "rev-parse", "--path-format=absolute", "--git-path", "index").strip())
    with tempfile.TemporaryDirectory(prefix="onloop-audit-") as scratch:
        index = Path(scratch) / "index"
        if real_index.exists():
            shutil.copyfile(real_index, index)
        env = {"GIT_INDEX_FILE": str(index)}
        _git(worktree, "add", "-A", env=env)
        out = _git(worktree, "diff", "--cached", "--name-status", "-z", "-M", "--no-ext-diff", base, env=env)
    return _parse_name_status(out)


def _parse_name_status(out: str) -> list[Change]:
    fields = out.split("\0")
    changes: list[Change] = []
    i = 0
    while i < len(fields) and fields[i]:
        status = fields[i][0]
        if status in "RC":
            changes.append(Change(status, fields[i + 1], fields[i + 2]))
            i += 3
            continue
        path = fields[i + 1]
        changes.append(Change(status, path if status != "A" else None, path if status != "D" else None))
        i += 2
    return changes


def _audit_one(worktree: Path, base: str, policy: Policy, change: Change, max_bytes: int,
               test_files: frozenset[str] = frozenset()) -> list[Finding]:
    findings = _protected(policy, change)
    old = _old_content(worktree, base, change.old_path)
    if change.new_path is None:
        return findings + _test_changes(change, old, None, test_files)
    file = worktree / change.new_path
    escape = _escape(worktree, file, change.new_path)
    if escape:
        return [*findings, escape]  # the content behind an escaping link is not the agent's to read
    size = _apparent_size(file)
    if size > max_bytes:  # decided by stat, never by reading: a sparse 100 GB file costs nothing on disk
        return [*findings, Finding("oversized", change.new_path,
                                   f"{size:,} bytes, above the {max_bytes:,}-byte cap (not read)")]
    new = file.read_bytes() if file.is_file() else b""  # is_file: a fifo, socket or device is never opened
    findings += _blob_findings(change.new_path, old, new, max_bytes)
    added = _added_text(old, new)
    findings += _secret_findings(change.new_path, added)
    findings += _test_changes(change, old, new, test_files)
    return findings


def _protected(policy: Policy, change: Change) -> list[Finding]:
    for path in {p for p in (change.old_path, change.new_path) if p}:
        for pattern in policy.protected:
            if glob_match(pattern, path):
                verb = {"A": "added", "D": "deleted", "R": "renamed"}.get(change.status, "changed")
                return [Finding("protected_path", path, f"{verb}; matches protected pattern {pattern!r}")]
    return []


def _escape(worktree: Path, file: Path, rel: str) -> Finding | None:
    try:
        info = file.lstat()
    except FileNotFoundError:
        return None
    if file.is_symlink():
        target = os.readlink(file)
        resolved = Path(os.path.normpath(file.parent / target))
        if not resolved.is_relative_to(worktree) or _through_outside_link(worktree, resolved):
            return Finding("escape", rel, f"symlink to {scrub(target)!r}, outside the worktree")
        return None
    if info.st_nlink > 1:
        return Finding("escape", rel, f"hard link ({info.st_nlink} names for one file); it may alias a file outside")
    return None


def _apparent_size(file: Path) -> int:
    """st_size of a regular file (through a symlink already known to stay inside); 0 for anything else."""
    try:
        info = file.lstat()
        if stat.S_ISLNK(info.st_mode):
            info = file.stat()
    except OSError:
        return 0  # gone or unreachable: the read below decides, as before
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def _through_outside_link(worktree: Path, resolved: Path) -> bool:
    # `a -> b/../../x` is caught by normpath; `a -> link/x` where `link` itself escapes is caught here.
    try:
        return not resolved.resolve().is_relative_to(worktree.resolve())
    except (OSError, RuntimeError):
        return True  # a loop or an unreadable chain: treat as escaping


def _blob_findings(rel: str, old: bytes | None, new: bytes, max_bytes: int) -> list[Finding]:
    findings = []
    if len(new) > max_bytes:
        findings.append(Finding("oversized", rel, f"{len(new):,} bytes, above the {max_bytes:,}-byte cap"))
    if b"\0" in new and (old is None or b"\0" not in old):
        findings.append(Finding("binary", rel, "contains NUL bytes (binary content added)"))
    return findings


def _added_text(old: bytes | None, new: bytes) -> str:
    """Lines present in `new` more often than in `old` (a multiset difference: cheap and order-free)."""
    new_lines = new.decode("utf-8", "replace").splitlines()
    if old is None:
        return "\n".join(new_lines)
    before = Counter(old.decode("utf-8", "replace").splitlines())
    added = []
    for line in new_lines:
        if before[line] > 0:
            before[line] -= 1
        else:
            added.append(line)
    return "\n".join(added)


def _secret_findings(rel: str, text: str) -> list[Finding]:
    findings = []
    for match in find_secrets(text):
        line_start = text.rfind("\n", 0, match.start) + 1
        line_end = text.find("\n", match.end)
        line = text[line_start : line_end if line_end != -1 else len(text)]
        context = scrub(line)[:160]
        severity: Severity = "block" if match.certain else "warn"
        findings.append(Finding("secret", rel, f"{match.kind} in added text: {context.strip()!r}", severity))
    return findings


def _test_changes(change: Change, old: bytes | None, new: bytes | None,
                  test_files: frozenset[str] = frozenset()) -> list[Finding]:
    known = bool(change.old_path) and change.old_path in test_files
    if change.old_path and change.new_path and (_collected(change.old_path) or known) and not (
            _collected(change.new_path) or change.new_path in test_files):
        evidence = f"test file {change.old_path} renamed to a name the test runner does not collect"
        return [Finding("test_deleted", change.path, evidence)]
    relevant = [p for p in (change.old_path, change.new_path)
                if p and (is_test_path(p) or is_test_config(p) or p in test_files)]
    if not relevant:
        return []
    before = old.decode("utf-8", "replace") if old is not None else None
    after = new.decode("utf-8", "replace") if new is not None else None
    return [Finding(kind, change.path, evidence) for kind, evidence in compare_tests(change.path, before, after)]


def _old_content(worktree: Path, base: str, path: str | None) -> bytes | None:
    if path is None:
        return None
    done = subprocess.run(
        ["git", "-C", str(worktree), "cat-file", "blob", f"{base}:{path}"],
        capture_output=True, timeout=_GIT_TIMEOUT,
    )
    return done.stdout if done.returncode == 0 else None


def _git(worktree: Path, *args: str, env: dict[str, str] | None = None) -> str:
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(
        ["git", "-C", str(worktree), *args], capture_output=True, text=True, env=full_env, timeout=_GIT_TIMEOUT
    )
    if done.returncode != 0:
        raise WorkspaceError(f"git {args[0]} failed in {worktree}: {done.stderr.strip()}")
    return done.stdout



# -- tests: what counts as a test, and how a change weakens them ---------------------------------------

_TEST_NAME = re.compile(
    r"(^test_.*\.py$|.*_test\.py$|.*\.(test|spec)\.[cm]?[jt]sx?$|.*_test\.go$|^test_.*\.rb$|.*_spec\.rb$)"
)
_TEST_DIRS = {"tests", "test", "__tests__", "spec", "specs"}
_CODE_SUFFIXES = {".py", ".js", ".jsx", ".ts", ".tsx", ".mjs", ".cjs", ".go", ".rs", ".rb"}
_TEST_CONFIG = re.compile(
    r"^(conftest\.py|\.?pytest\.ini|\.?pytest\.toml|tox\.ini|setup\.cfg|pyproject\.toml|noxfile\.py|"
    r"(jest|vitest|karma|mocha)\.config\.[cm]?[jt]s|\.mocharc\.\w+|package\.json|Cargo\.toml)$"
)
_TEST_DEF = re.compile(r"^\s*(?:async\s+)?def\s+test\w*|\b(?:it|test)\s*\(|#\[(?:tokio::)?test\]|\bfunc\s+Test\w+")
_ASSERT_USE = re.compile(r"\bassert\w*[\s(!]|\bexpect\s*\(|\.should\b|\bt\.(?:Error|Fatal)f?\s*\(")
_SKIP = re.compile(
    r"pytest\.mark\.(?:skip|skipif|xfail)|pytest\.(?:skip|xfail|importorskip)\s*\(|"
    r"unittest\.(?:skip|skipIf|skipUnless|expectedFailure)|\.skipTest\s*\(|@skip\b|"
    r"\b(?:it|describe|test|context)\.(?:skip|only|todo)\s*\(|\.only\s*\(|\bx(?:it|describe|test)\s*\(|"
    r"\bf(?:it|describe)\s*\(|#\[ignore|\bt\.Skip(?:Now|f)?\s*\(|collect_ignore|pytest_collection_modifyitems|"
    r"--deselect|--ignore\b|--ignore-glob|(?:^|[\s\"'\[])-k\b|(?:^|[\s\"'\[])-m\b|norecursedirs|testpaths|"
    # Evasions: a skip imported under another name, SkipTest raised by hand, a runner that collects
    # nothing (load_tests returning an empty suite, collection hooks, exiting during import).
    r"\bSkipTest\b|from\s+(?:unittest|pytest)\S*\s+import\s+.*\b(?:skip\w*|xfail|expectedFailure)\b|"
    r"\bdef\s+load_tests\b|pytest_ignore_collect|pytest_collect_file|\bos\._exit\s*\("
)
_BROAD = {"Exception", "BaseException"}


def is_test_path(path: str) -> bool:
    """Test files by the default conventions of pytest, jest/vitest/mocha, go test and cargo."""
    pure = PurePosixPath(path)
    if _collected(path):
        return True
    # pytest collects only test_*.py / *_test.py, so other .py files in tests/ are helpers; for the
    # other languages the directory is the convention (__tests__/, cargo's tests/, spec/).
    return pure.suffix in _CODE_SUFFIXES - {".py"} and any(part in _TEST_DIRS for part in pure.parts[:-1])


def _collected(path: str) -> bool:
    return bool(_TEST_NAME.match(PurePosixPath(path).name))


def is_test_config(path: str) -> bool:
    pure = PurePosixPath(path)
    # A test package's __init__.py runs before any test in it: it can exit or hide the tests.
    in_tests = pure.name == "__init__.py" and any(part in _TEST_DIRS for part in pure.parts[:-1])
    return in_tests or bool(_TEST_CONFIG.match(pure.name))


def compare_tests(path: str, before: str | None, after: str | None) -> list[tuple[str, str]]:
    """(kind, evidence) pairs for how `after` weakens the tests in `before` (None: file absent)."""
    if after is None:
        count = count_tests(path, before or "")
        held = f", it held {count} test{'s' if count != 1 else ''}" if count else ""
        return [("test_deleted", f"test file deleted{held}")] if count or is_test_path(path) else []
    found = [("test_skipped", f"skip marker added: {scrub(line.strip())[:120]!r}")
             for line in _added_text(before.encode() if before is not None else None, after.encode()).splitlines()
             if _SKIP.search(line)]
    if before is None:
        return found
    if path.endswith(".py") and (python := _compare_python(before, after)) is not None:
        return found + python
    return found + _compare_counts(path, before, after)


def count_tests(path: str, text: str) -> int:
    if path.endswith(".py"):
        tests = _python_tests(text)
        if tests is not None:
            return len(tests)
    return sum(1 for line in text.splitlines() if _TEST_DEF.search(line))


def _compare_counts(path: str, before: str, after: str) -> list[tuple[str, str]]:
    found = []
    tests_before, tests_after = count_tests(path, before), count_tests(path, after)
    if tests_after < tests_before:
        found.append(("test_deleted", f"{tests_before} tests before, {tests_after} after"))
    asserts_before, asserts_after = len(_ASSERT_USE.findall(before)), len(_ASSERT_USE.findall(after))
    if asserts_after < asserts_before:
        found.append(("assertion_weakened", f"{asserts_before} assertions before, {asserts_after} after"))
    return found


@dataclass(frozen=True, slots=True)
class _TestShape:
    asserts: int  # assertions that can fail
    constant_asserts: int  # `assert True`, `assert 1`: cannot fail
    broad_excepts: int  # bare `except:` or `except Exception:`


def _compare_python(before: str, after: str) -> list[tuple[str, str]] | None:
    old, new = _python_tests(before), _python_tests(after)
    if old is None or new is None:
        return None  # unparsable: the gates will fail on it; fall back to counting lines
    found = []
    removed = sorted(set(old) - set(new))
    if removed:
        found.append(("test_deleted", f"test functions removed: {', '.join(removed[:5])}"))
    rebound = _rebound_tests(before, after, set(old))
    if rebound:
        found.append(("test_deleted", f"test names bound again (a second def, a class, an assignment or a del): "
                                      f"{', '.join(rebound[:5])}; the test that was there is never collected"))
    for name in sorted(set(old) & set(new)):
        a, b = old[name], new[name]
        if b.asserts < a.asserts:
            found.append(("assertion_weakened", f"{name}: {a.asserts} assertions before, {b.asserts} after"))
        if b.constant_asserts > a.constant_asserts:
            found.append(("assertion_weakened", f"{name}: constant assertion added (assert True or similar)"))
        if b.broad_excepts > a.broad_excepts:
            found.append(("assertion_weakened", f"{name}: broad except added around test code"))
    return found


def _rebound_tests(before: str, after: str, tests: set[str]) -> list[str]:
    """Existing tests whose name is bound more often than before in its scope: Python keeps the last
    binding, so `def test_add` appended after the operator's `def test_add` (or `del test_add`, or
    `class test_add`) replaces the test while its name, and so its id, stays."""
    old, new = _test_bindings(before), _test_bindings(after)
    return sorted(name for name in tests if new.get(name, 0) > old.get(name, 0))


def _test_bindings(text: str) -> Counter[str]:
    """How often each name is bound at module level and in each class body (qualified `Class.name`)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return Counter()
    counts: Counter[str] = Counter()
    scopes: list[tuple[str, list[ast.stmt]]] = [("", tree.body)]
    scopes += [(f"{n.name}.", n.body) for n in tree.body if isinstance(n, ast.ClassDef)]
    for prefix, body in scopes:
        for statement in body:
            for name in _bound_names(statement):
                counts[prefix + name] += 1
    return counts


def _bound_names(statement: ast.stmt) -> list[str]:
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [statement.name]
    if isinstance(statement, ast.Assign | ast.Delete):
        targets = statement.targets
    elif isinstance(statement, ast.AnnAssign | ast.AugAssign):
        targets = [statement.target]
    elif isinstance(statement, ast.Import | ast.ImportFrom):
        return [(a.asname or a.name).split(".")[0] for a in statement.names]
    else:
        return []
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def _python_tests(text: str) -> dict[str, _TestShape] | None:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    tests: dict[str, _TestShape] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if _is_test_function(item):
                    tests[f"{node.name}.{item.name}"] = _shape(item)
    for node in tree.body:
        if _is_test_function(node):
            tests[node.name] = _shape(node)
    return tests


def _is_test_function(node: ast.AST) -> TypeGuard[ast.FunctionDef | ast.AsyncFunctionDef]:
    return isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")


def _shape(func: ast.AST) -> _TestShape:
    asserts = constant = broad = 0
    for node in ast.walk(func):
        if isinstance(node, ast.Assert):
            if isinstance(node.test, ast.Constant):
                constant += 1
            else:
                asserts += 1
        elif isinstance(node, ast.Call) and _is_assert_call(node.func):
            asserts += 1
        elif isinstance(node, ast.ExceptHandler) and (
            node.type is None or (isinstance(node.type, ast.Name) and node.type.id in _BROAD)
        ):
            broad += 1
    return _TestShape(asserts, constant, broad)


def _is_assert_call(func: ast.expr) -> bool:
    # self.assertEqual(...), np.testing.assert_allclose(...), pytest.raises(...), expect(...)
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name.startswith("assert") or name in ("raises", "warns", "expect", "fail")
