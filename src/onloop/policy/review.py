"""Review triggers: changes that may be legitimate but that a human must see before a run ends "done".

The diff audit (`audit.py`) blocks what is wrong on its face: deleted tests, skip markers, removed or
constant assertions. Two subtler ways of passing the gates are not wrong on their face, so they do not
roll an iteration back; instead a finding here sends the run to human review:

- `changed_expectations`: an existing test now expects something else. Changing an expected value
  is a change of the spec, not of the code, and only a human may change the spec. Expectations are
  compared as a multiset of normalised AST dumps (`ast.dump` ignores layout), so adding assertions,
  reformatting, renaming a test or moving an assertion never triggers; a parametrize list or an
  `EXPECTED` dict is split into one expectation per case or entry, so adding a case never triggers.
- `suspicious_code`: code outside the tests that inspects the test runner, imports or patches the test
  framework or the interpreter, runs dynamic code, or names test reports and test files. Features are
  counted in the base text and in the new text and only an increase counts, so code that was already
  there never triggers. Python goes through the AST with constant folding (concatenation, `%`,
  `.format`, f-strings, `join`, `chr`, `bytes.fromhex`, base64, rot13, slicing), so that a mechanism is
  caught whatever its spelling; JS/TS and unparsable Python go through regexes over the lines.

Both detectors are deterministic and never raise on odd input: text that cannot be parsed falls back
to lines. Every excerpt goes through `secrets.scrub` before it leaves this module.

What the detectors cannot see (the list the README quotes):
- expectations that live outside the test file or are computed at run time (a data file, a fixture in
  conftest.py, a helper in another module);
- an expectation kept verbatim but made unreachable (under `if False:`, after a `return`, moved into a
  helper nobody calls): it still counts as present;
- changed test inputs that are not literal expected values used by an assertion (`f(3)` -> `f(4)`);
- in JS/TS/Go/Rust tests, only lines with an assertion word are compared (table rows without one are
  invisible), and whitespace and quote style inside string literals are ignored;
- strings built from values the folder cannot compute (a loop that accumulates, a file, the network,
  the environment, a function's result, `str.translate`, `re.sub`), and `getattr`/`setattr` with a
  computed name;
- a module reached through a container or an object (`[sys][0].modules`, `operator.attrgetter`) or
  through a name bound more than once;
- import-time effects reached indirectly (a function that calls `sys.exit` or `signal.signal`, called
  at import time): the import-time check is lexical;
- what a shell command does (`os.system("kill $PPID")`): only the strings in it are checked;
- anything in C extensions, shell scripts, config files, or source languages other than Python and
  JS/TS; and JS/TS only by regexes over lines (no folding; comments are not stripped).
False positives to expect (only new occurrences count, so existing ones stay silent): code that
legitimately mentions "onloop" (onloop's own repository) or the test tooling (pytest plugins, CI
helpers), plugin loaders importing fully computed module names, ctypes, replacing `sys.stdout`,
template engines that compile code.
"""

from __future__ import annotations

import ast
import base64
import binascii
import builtins
import codecs
import difflib
import itertools
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from onloop.policy.secrets import scrub


@dataclass(frozen=True, slots=True)
class ReviewFinding:
    """Why a run needs a human: one checkable line, with the short excerpts the reviewer compares."""

    kind: Literal["expectation_changed", "suspicious_code"]
    path: str
    evidence: str
    before: str = ""
    after: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.evidence}"


_EXCERPT = 160
_EVIDENCE = 320
_MAX_REPORTED = 100  # findings per file; past that a rewrite is obvious and one summary line says so
_MAX_CANDIDATES = 200  # replacements compared per missing expectation


def _one_line(text: str, limit: int = _EXCERPT) -> str:
    """`text` flattened to one line, scrubbed, then shortened (scrub first: a cut secret is missed)."""
    flat = scrub(" ".join(text.split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# -- changed expectations ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Expectation:
    key: str  # normalised AST dump (or normalised line): what is compared
    what: str  # "assertion", "decorator argument", "constant", "expected value", "assertion line"
    context: str  # the test, class or constant it belongs to, for the reviewer
    line: int
    excerpt: str


def changed_expectations(path: str, before: str | None, after: str | None) -> list[ReviewFinding]:
    """Findings for expectations of the test file at `path` that `after` no longer holds verbatim."""
    if before is None:
        return []  # a new test file: nothing was expected before
    if after is None:
        return _deleted(path, before)
    old = _python_expectations(before) if path.endswith(".py") else None
    new = _python_expectations(after) if old is not None else None
    if old is None or new is None:
        old, new = _line_expectations(before), _line_expectations(after)
    missing, added = _multiset_minus(old, new), _multiset_minus(new, old)
    pairs = _pair(missing[:_MAX_REPORTED], added)
    findings = [_expectation_finding(path, gone, replacement) for gone, replacement in pairs]
    if len(missing) > _MAX_REPORTED:
        rest = f"... and {len(missing) - _MAX_REPORTED} more expectations changed or removed"
        findings.append(ReviewFinding("expectation_changed", path, rest))
    return findings


def _deleted(path: str, before: str) -> list[ReviewFinding]:
    found = _python_expectations(before) if path.endswith(".py") else None
    count = len(found if found is not None else _line_expectations(before))
    if not count:
        return []
    return [ReviewFinding("expectation_changed", path, f"test file deleted with {count} expectations in it")]


def _pair(missing: list[_Expectation], added: list[_Expectation]) -> list[tuple[_Expectation, _Expectation | None]]:
    """Each missing expectation with its closest replacement among the added ones (each used once)."""
    spare = list(added)
    pairs: list[tuple[_Expectation, _Expectation | None]] = []
    for gone in missing:
        replacement = _closest(gone, spare)
        if replacement is not None:
            spare.remove(replacement)
        pairs.append((gone, replacement))
    return pairs


def _multiset_minus(items: list[_Expectation], other: list[_Expectation]) -> list[_Expectation]:
    spare = Counter(e.key for e in other)
    left = []
    for item in items:
        if spare[item.key] > 0:
            spare[item.key] -= 1
        else:
            left.append(item)
    return left


def _closest(gone: _Expectation, candidates: list[_Expectation]) -> _Expectation | None:
    # Prefer a replacement in the same test, then the most similar text; below half similar and in
    # another test, an added expectation is not a replacement but a new one. Other tests are searched
    # only when the same test has no candidate, and only so far: a rewritten file must stay cheap.
    same = [c for c in candidates if c.context == gone.context]
    best: _Expectation | None = None
    best_score = 0.0
    for candidate in (same or candidates)[:_MAX_CANDIDATES]:
        matcher = difflib.SequenceMatcher(None, gone.excerpt, candidate.excerpt)
        if not same and (matcher.real_quick_ratio() < 0.5 or matcher.quick_ratio() < 0.5):
            continue
        ratio = matcher.ratio()
        if not same and ratio < 0.5:
            continue
        score = ratio
        if score > best_score:
            best, best_score = candidate, score
    return best


def _expectation_finding(path: str, gone: _Expectation, replacement: _Expectation | None) -> ReviewFinding:
    if replacement is None:
        evidence = f"{gone.context}: {gone.what} removed (line {gone.line}): {gone.excerpt!r}"
        return ReviewFinding("expectation_changed", path, _one_line(evidence, _EVIDENCE), before=gone.excerpt)
    evidence = (
        f"{gone.context}: {gone.what} changed (line {gone.line} -> {replacement.line}): "
        f"{gone.excerpt!r} -> {replacement.excerpt!r}"
    )
    return ReviewFinding(
        "expectation_changed", path, _one_line(evidence, _EVIDENCE), before=gone.excerpt, after=replacement.excerpt
    )


def _key(node: ast.AST) -> str:
    # `u"x"` and `"x"` are the same value; ast.dump keeps the prefix as `kind='u'`.
    return ast.dump(node).replace(", kind='u'", "")


# Calls that are assertions by name: unittest's assert*, mock's assert_*, numpy/pandas assert_*,
# pytest.raises/warns/fail, and expect() of playwright and friends. `approx` is no assertion by itself:
# it counts inside the assertion, the parametrize case or the expected value that holds it.
_ASSERT_NAMES = frozenset({"raises", "warns", "deprecated_call", "expect", "fail"})


def _call_name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _is_expectation_call(call: ast.Call) -> bool:
    name = _call_name(call.func)
    if name.startswith("assert") or name in _ASSERT_NAMES:
        return True
    # expect(x).to_equal(3): the whole chain is the expectation, the expected value sits at the end.
    inner = call.func.value if isinstance(call.func, ast.Attribute) else None
    while isinstance(inner, ast.Attribute | ast.Call):
        if isinstance(inner, ast.Call):
            if _is_expectation_call(inner):
                return True
            inner = inner.func
        else:
            inner = inner.value
    return False


def _without_message(node: ast.Assert | ast.Call) -> ast.AST:
    # The failure message explains, it does not expect: rewording it is not a change of the spec.
    if isinstance(node, ast.Assert):
        return ast.Assert(test=node.test, msg=None)
    keywords = [k for k in node.keywords if k.arg != "msg"]
    return ast.Call(func=node.func, args=node.args, keywords=keywords)


def _has_constant(node: ast.expr) -> bool:
    return not isinstance(node, ast.Lambda) and any(isinstance(n, ast.Constant) for n in ast.walk(node))


def _literalish(node: ast.expr) -> bool:
    """A value made of literals, possibly wrapped in calls: `3`, `{"a": 1}`, `approx(1.0)`, `Decimal("2")`."""
    callees = {id(n) for c in ast.walk(node) if isinstance(c, ast.Call) for n in ast.walk(c.func)}
    names = (n for n in ast.walk(node) if isinstance(n, ast.Name | ast.Attribute) and id(n) not in callees)
    return _has_constant(node) and next(names, None) is None


class _Expectations(ast.NodeVisitor):
    """Collects the expectations of one test module, with the test each belongs to."""

    def __init__(self, tree: ast.Module, text: str) -> None:
        self.tree = tree
        self.lines = _source_lines(text)
        self._users_of: dict[str, set[str]] | None = None
        self.found: list[_Expectation] = []
        self._context: list[str] = []
        self._referenced: list[set[str]] = [set()]

    def _add(self, key: str, what: str, node: ast.AST, excerpt: str = "", context: str = "") -> None:
        excerpt = excerpt or self._segment(node)
        context = context or ".".join(self._context) or "module"
        line = getattr(node, "lineno", 0)
        self.found.append(_Expectation(key, what, context, line, _one_line(excerpt)))

    def _segment(self, node: ast.AST) -> str:
        return _source_segment(self.lines, node)

    def visit_Module(self, node: ast.Module) -> None:
        self._body(node.body)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._decorators(node)
        self._context.append(node.name)
        self._body(node.body)
        self._context.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._decorators(node)
        self._context.append(node.name)
        self._referenced.append(set())
        for statement in node.body:
            self.visit(statement)
        self._expected_locals(node)
        self._referenced.pop()
        self._context.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Assert(self, node: ast.Assert) -> None:
        self._add(_key(_without_message(node)), "assertion", node)
        self._reference(node)

    def visit_Call(self, node: ast.Call) -> None:
        if not _is_expectation_call(node):
            self.generic_visit(node)
            return
        self._add(_key(_without_message(node)), "assertion", node)
        self._reference(node)

    def _reference(self, node: ast.AST) -> None:
        self._referenced[-1].update(n.id for n in ast.walk(node) if isinstance(n, ast.Name))

    def _body(self, body: list[ast.stmt]) -> None:
        """Module and class bodies: constant assignments are expectations; everything else is visited."""
        for statement in body:
            target, value = _simple_assignment(statement)
            if target and value is not None and _has_constant(value):
                self._constant(target, value, "constant", statement)
            else:
                self.visit(statement)

    def _constant(self, target: str, value: ast.expr, what: str, statement: ast.AST) -> None:
        """One expectation per entry of a dict or element of a list, so that adding entries is fine."""
        context = ".".join(self._context) or target + self._users(target)
        if isinstance(value, ast.Dict):
            for k, v in zip(value.keys, value.values, strict=True):
                key = f"{target}[{_key(k) if k is not None else '**'}] = {_key(v)}"
                excerpt = f"{target}: {self._segment(k) if k is not None else '**'}: {self._segment(v)}"
                self._add(key, what, v, excerpt, context)
        elif isinstance(value, ast.List | ast.Tuple | ast.Set):
            for element in value.elts:
                self._add(f"{target}[] = {_key(element)}", what, element, f"{target}: {self._segment(element)}",
                          context)
        else:
            self._add(f"{target} = {_key(value)}", what, statement, context=context)

    def _users(self, name: str) -> str:
        if self._users_of is None:  # built once: a test module can hold hundreds of constants
            self._users_of = _users_of(self.tree)
        users = sorted(self._users_of.get(name, set()))
        return f" (used by {', '.join(users[:3])})" if users else ""

    def _decorators(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        """Decorator arguments, one per parametrize case: `@parametrize("a,expected", [(1, 2)])`."""
        context = ".".join([*self._context, node.name])
        for decorator in node.decorator_list:
            if not isinstance(decorator, ast.Call):
                continue
            name = ast.unparse(decorator.func)
            arguments = [(str(i), "...", a) for i, a in enumerate(decorator.args)]
            arguments += [(k.arg or "**", f"{k.arg or '*'}=...", k.value) for k in decorator.keywords]
            for label, shown, argument in arguments:
                parts = argument.elts if isinstance(argument, ast.List | ast.Tuple) else [argument]
                for part in parts:
                    key = f"@{_key(decorator.func)} {label}: {_key(part)}"
                    excerpt = f"@{name}({shown}): {self._segment(part)}"
                    self._add(key, "decorator argument", part, excerpt, context)

    def _expected_locals(self, func: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        """`expected = 5` then `assert f() == expected`: the literal is the expectation."""
        for node in _own_nodes(func):
            target, value = _simple_assignment(node)
            if target in self._referenced[-1] and value is not None and _literalish(value):
                self._constant(target, value, "expected value", node)


def _users_of(tree: ast.Module) -> dict[str, set[str]]:
    """Name -> the functions whose code mentions it, in one pass over the tree."""
    users: dict[str, set[str]] = {}
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, owner = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            owner = node.name
        elif isinstance(node, ast.Name) and owner:
            users.setdefault(node.id, set()).add(owner)
        stack.extend((child, owner) for child in ast.iter_child_nodes(node))
    return users


def _own_nodes(func: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.AST]:
    """The nodes of a function's body, not those of the functions nested in it (they have their own)."""
    stack: list[ast.AST] = list(func.body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            stack.extend(ast.iter_child_nodes(node))


def _source_lines(text: str) -> list[str]:
    # The line ends of the tokenizer, not those of str.splitlines (which also splits on \f and \x1c).
    return re.split(r"\r\n|\r|\n", text)


def _source_segment(lines: list[str], node: ast.AST, max_lines: int = 20) -> str:
    """`ast.get_source_segment` without re-splitting the whole text on every call (quadratic in big files)."""
    start: int | None = getattr(node, "lineno", None)
    end: int | None = getattr(node, "end_lineno", None)
    col: int | None = getattr(node, "col_offset", None)
    end_col: int | None = getattr(node, "end_col_offset", None)
    if start is None or end is None or col is None or end_col is None or not 0 < start <= end <= len(lines):
        return ""
    if start == end:
        return lines[start - 1].encode()[col:end_col].decode("utf-8", "replace")  # offsets count UTF-8 bytes
    first = lines[start - 1].encode()[col:].decode("utf-8", "replace")
    if end - start >= max_lines:
        return "\n".join([first, *lines[start : start + max_lines]])  # long enough for a one-line excerpt
    last = lines[end - 1].encode()[:end_col].decode("utf-8", "replace")
    return "\n".join([first, *lines[start : end - 1], last])


def _simple_assignment(node: ast.AST) -> tuple[str, ast.expr | None]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id, node.value
    return "", None


def _python_expectations(text: str) -> list[_Expectation] | None:
    try:
        tree = ast.parse(text)
        collector = _Expectations(tree, text)
        collector.visit(tree)
    except (SyntaxError, ValueError, RecursionError):
        return None  # unparsable (or nested past the parser's depth): the caller falls back to lines
    return collector.found


_ASSERT_LINE = re.compile(
    r"\bexpect\s*\(|\bassert|\bto(?:Be|Equal|StrictEqual|Match|Throw|Have|Contain)\w*|\.should\b|"
    r"\bt\.(?:Error|Fatal|Fail)\w*\s*\(|\b(?:require|assert)\.\w+\s*\(|\b(?:want|expected?)\s*(?::=|=(?!=)|:)"
)
_TEST_HEADER = re.compile(
    r"""\b(?:it|test|describe)\s*\(\s*(['"`])(?P<js>.*?)\1|\bfunc\s+(?P<go>Test\w+)|\bfn\s+(?P<rs>\w+)|"""
    r"""\bdef\s+(?P<py>\w+)"""
)


def _line_expectations(text: str) -> list[_Expectation]:
    """The fallback for other languages: each line with an assertion word is one expectation."""
    found = []
    context = "module"
    for number, line in enumerate(text.splitlines(), 1):
        header = _TEST_HEADER.search(line)
        if header:
            context = next(g for g in header.group("js", "go", "rs", "py") if g is not None)
        if _ASSERT_LINE.search(line):
            # Layout and quote style are a formatter's business (prettier, gofmt): not part of the key.
            key = re.sub(r"\s+", "", line).replace("'", '"').rstrip(";,")
            found.append(_Expectation(key, "assertion line", context, number, _one_line(line.strip())))
    return found


# -- suspicious code: the features -----------------------------------------------------------------------

_RUNNER = "inspects the test runner"
_IMPORT = "imports a test framework or a computed module name"
_PATCH = "patches the interpreter or a module"
_EXIT = "controls how the process ends"
_DYNAMIC = "runs dynamic code"
_RAWFD = "writes to raw file descriptors"
_REPORT = "names test reports or test files"


@dataclass(frozen=True, slots=True)
class _Feature:
    category: str
    detail: str
    line: int
    span: tuple[int, int, int, int]  # (line, column, end line, end column): to drop nested duplicates
    excerpt: str

    @property
    def key(self) -> tuple[str, str]:
        return self.category, self.detail


# Strings that name a test framework or its environment. Ambiguous words count only as the whole string.
_RUNNER_TEXT = re.compile(
    r"(?i)pytest|py\.test|unittest|nosetests|nose2|xdist|onloop|jest_worker|vitest|tox_env|nox_current|"
    r"^(?:tox|nox|jest|doctest)$|/proc/(?:self|thread-self|\d|%|\{|$)"
)
# Strings that name test reports, test caches or the tests themselves (to read the expected answers).
_REPORT_TEXT = re.compile(
    r"(?i)junit|xunit|\.pytest_cache|lastfailed|nodeids|(?<![a-z])test[-_ ]?results?|(?<![a-z])test[-_]?reports?|"
    r"report\.json|(?<![a-z])(?:tests?|reports?|results?)[\w.-]*\.xml|\.coverage\b|coverage[-_.](?:xml|json|lcov|final)|"
    r"lcov\.info|htmlcov|\.tox\b|conftest|(?:^|[/\\])tests?[/\\]|(?:^|[/\\])tests$|__tests__|"
    r"(?<![a-z])test_(?:\w*|\*)\.py|\w_test\.py|\*_test\.py|\.(?:test|spec)\.[cm]?[jt]sx?"
)


def _string_features(text: str) -> Iterator[tuple[str, str]]:
    shown = text if len(text) <= 48 else text[:47] + "…"
    # A report name often holds a runner's name too (".pytest_cache"): it is reported once, as a report.
    if _REPORT_TEXT.search(text):
        yield _REPORT, f"string {shown!r}"
    elif _RUNNER_TEXT.search(text):
        yield _RUNNER, f"string {shown!r}"


# Dotted names (after resolving imports and aliases) whose mere use is a feature; a prefix matches too.
_REFERENCES: dict[str, str] = {
    **dict.fromkeys(
        ("sys.modules", "sys._getframe", "sys._current_frames", "inspect.stack", "inspect.currentframe",
         "inspect.getouterframes", "inspect.getinnerframes", "inspect.trace", "inspect.getframeinfo",
         "traceback.extract_stack", "traceback.walk_stack", "traceback.format_stack", "traceback.print_stack",
         "traceback.StackSummary", "gc.get_objects", "gc.get_referrers", "gc.get_referents", "os.getppid",
         "sys.gettrace", "sys.getprofile", "__main__"),
        _RUNNER,
    ),
    **dict.fromkeys(
        ("sys.settrace", "sys.setprofile", "threading.settrace", "threading.setprofile", "sys.monitoring",
         "threading.settrace_all_threads", "threading.setprofile_all_threads", "sys.addaudithook",
         "sys.meta_path", "sys.path_hooks", "faulthandler", "ctypes", "_ctypes"),
        _PATCH,
    ),
    **dict.fromkeys(("atexit.register", "os._exit", "os.abort"), _EXIT),
    **dict.fromkeys(("os.write", "os.writev", "os.pwrite", "os.dup", "os.dup2"), _RAWFD),
    **dict.fromkeys(
        ("exec", "eval", "compile", "marshal.loads", "marshal.load", "types.CodeType", "types.FunctionType",
         "runpy.run_path", "runpy.run_module"),
        _DYNAMIC,
    ),
}
# Ordinary in a function (a CLI's main, a server's handler); suspicious when they run at import time.
_IMPORT_TIME = frozenset({"sys.exit", "exit", "quit", "os.kill", "os.killpg", "signal.signal", "signal.alarm",
                          "signal.setitimer", "signal.raise_signal", "signal.pthread_kill"})
_FRAME_ATTRS = frozenset({"f_back", "f_globals", "f_locals", "f_code", "f_trace", "tb_frame", "gi_frame",
                          "cr_frame", "ag_frame"})
_TEST_FRAMEWORKS = frozenset({"pytest", "_pytest", "unittest", "nose", "nose2", "py", "xdist", "conftest"})
_IMPORTERS = frozenset({"__import__", "importlib.import_module", "importlib.__import__"})
_PICKLES = frozenset({"pickle.loads", "_pickle.loads", "dill.loads", "cloudpickle.loads"})
_FD_OPENERS = frozenset({"open", "io.open", "os.fdopen"})
_BUILTIN_NAMES = frozenset(dir(builtins))
_MAX_PAYLOAD_DEPTH = 2


def _is_test_framework(module: str) -> bool:
    top = module.split(".")[0]
    return top in _TEST_FRAMEWORKS or top.startswith("pytest_")


def _join(base: str, attr: str) -> str:
    # Builtins are named bare, so that `builtins.exec`, `__builtins__["exec"]` and `exec` are one name.
    return attr if base == "builtins" and attr != "__dict__" else f"{base}.{attr}"


def _span(node: ast.expr | ast.stmt) -> tuple[int, int, int, int]:
    return node.lineno, node.col_offset, node.end_lineno or node.lineno, node.end_col_offset or node.col_offset


def _contains(outer: tuple[int, int, int, int], inner: tuple[int, int, int, int]) -> bool:
    return outer[:2] <= inner[:2] and inner[2:] <= outer[2:] and outer != inner


def _is_main_guard(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    named = any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
    return named and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)


# -- suspicious code: constant folding -------------------------------------------------------------------


class _Unfoldable(Exception):
    """Internal: the expression is not a constant the folder computes."""


_MAX_FOLD = 10_000  # longest string or tuple the folder builds: a guard against `"x" * 10**9`
# `"%99999d"`, `"{:99999}"`, `"{:{}}"`: formats that could allocate without bound are not folded.
_WIDE_PERCENT = re.compile(r"%[-#0 +]*(?:\*|\d{4,})|%[-#0 +]*\d*\.(?:\*|\d{4,})")
_WIDE_BRACE = re.compile(r"\{[^{}]*:[^{}]*(?:\d{4,}|\{)")
_WIDE_SPEC = re.compile(r"\d{4,}")
_SAFE_CODECS = frozenset({"rot13", "rot_13", "rot-13", "hex", "hex_codec", "base64", "base64_codec", "utf-8",
                          "utf8", "ascii", "latin-1", "latin1"})
_STR_METHODS = frozenset({"lower", "upper", "strip", "lstrip", "rstrip", "replace", "swapcase", "casefold",
                          "capitalize", "title", "removeprefix", "removesuffix", "join", "format", "decode",
                          "encode"})
_DECODERS: dict[str, Callable[..., object]] = {
    "base64.b64decode": base64.b64decode, "base64.standard_b64decode": base64.standard_b64decode,
    "base64.urlsafe_b64decode": base64.urlsafe_b64decode, "base64.b32decode": base64.b32decode,
    "base64.b16decode": base64.b16decode, "base64.b85decode": base64.b85decode,
    "base64.a85decode": base64.a85decode, "binascii.unhexlify": binascii.unhexlify,
    "binascii.a2b_hex": binascii.a2b_hex, "binascii.a2b_base64": binascii.a2b_base64,
    "bytes.fromhex": bytes.fromhex, "bytearray.fromhex": bytes.fromhex,
}
_FOLD_ERRORS = (_Unfoldable, ArithmeticError, LookupError, TypeError, ValueError, RecursionError)


def _size(value: object) -> int:
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, tuple):
        return len(value) + sum(_size(v) for v in value)
    return 1


def _bounded(items: Iterable[object]) -> tuple[object, ...]:
    """A tuple built item by item, given up as soon as it grows past the limit (not after)."""
    built: list[object] = []
    total = 0
    for item in items:
        total += _size(item) + 1
        if total > _MAX_FOLD:
            raise _Unfoldable
        built.append(item)
    return tuple(built)


def _guard_product(receiver: object, args: object) -> None:
    # `"a" * 5000` replaced by a 5000-character string, or formatted 5000 times: each operand is small,
    # the result is not. Refused before it is built.
    if (_size(receiver) + 1) * (_size(args) + 1) > _MAX_FOLD * 100:
        raise _Unfoldable


def _checked(value: object) -> object:
    if isinstance(value, str | bytes | tuple) and _size(value) > _MAX_FOLD:
        raise _Unfoldable
    if isinstance(value, int) and abs(value) > 2**64:
        raise _Unfoldable
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, str | bytes | int | float | tuple):
        return value
    raise _Unfoldable


def _subscript(value: object, index: object) -> object:
    if isinstance(value, str | bytes | tuple) and isinstance(index, int | slice):
        return value[index]
    raise _Unfoldable


def _codec(decode: bool, value: object, encoding: str) -> object:
    if not isinstance(value, str | bytes):
        raise _Unfoldable
    info = codecs.lookup(encoding)
    convert: Callable[..., tuple[object, int]] = info.decode if decode else info.encode
    return convert(value)[0]


def _convert(name: str, item: object) -> str:
    if name == "chr" and isinstance(item, int):
        return chr(item)
    if name == "str" and isinstance(item, str | int | float):
        return str(item)
    raise _Unfoldable


def _binop(op: ast.operator, left: object, right: object) -> object:
    if isinstance(op, ast.Mult) and isinstance(right, str | bytes | tuple) and isinstance(left, int):
        left, right = right, left
    if isinstance(op, ast.Mult) and isinstance(left, str | bytes | tuple) and isinstance(right, int):
        if len(left) * right > _MAX_FOLD:
            raise _Unfoldable
        return _checked(operator.mul(left, right))
    if isinstance(op, ast.Mod) and isinstance(left, str | bytes):
        if _WIDE_PERCENT.search(str(left)):
            raise _Unfoldable
        _guard_product(left, right)
        return _checked(operator.mod(left, right))
    numbers = isinstance(left, int | float) and isinstance(right, int | float)
    if isinstance(op, ast.Add) and (numbers or type(left) is type(right)):
        return _checked(operator.add(left, right))
    if isinstance(op, ast.Sub) and numbers:
        return _checked(operator.sub(left, right))
    raise _Unfoldable


class _Folder:
    """Computes string constants however they are spelled, within small limits, without running code."""

    def __init__(self, resolve: Callable[[ast.expr], str | None]) -> None:
        self.env: dict[str, object] = {}
        self._resolve = resolve

    def fold(self, node: ast.expr) -> object | None:
        try:
            return self._eval(node, self.env)
        except _FOLD_ERRORS:
            return None

    def _eval(self, node: ast.expr, env: dict[str, object]) -> object:
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes | int | float):
            return node.value
        if isinstance(node, ast.Name) and node.id in env:
            return env[node.id]
        if isinstance(node, ast.Tuple | ast.List):
            return _bounded(self._eval(e, env) for e in node.elts)
        if isinstance(node, ast.BinOp):
            return _binop(node.op, self._eval(node.left, env), self._eval(node.right, env))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return _checked(operator.neg(self._number(node.operand, env)))
        if isinstance(node, ast.JoinedStr):
            return _checked("".join(str(p) for p in _bounded(self._formatted(v, env) for v in node.values)))
        if isinstance(node, ast.Subscript):
            return _checked(_subscript(self._eval(node.value, env), self._index(node.slice, env)))
        if isinstance(node, ast.Call) and not node.keywords:
            return _checked(self._call(node, env))
        if isinstance(node, ast.GeneratorExp | ast.ListComp):
            return _checked(self._comprehension(node, env))
        raise _Unfoldable

    def _number(self, node: ast.expr, env: dict[str, object]) -> int | float:
        value = self._eval(node, env)
        if isinstance(value, int | float):
            return value
        raise _Unfoldable

    def _formatted(self, node: ast.expr, env: dict[str, object]) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if not isinstance(node, ast.FormattedValue):
            raise _Unfoldable
        value = self._eval(node.value, env)
        if node.conversion == ord("s"):
            value = str(value)
        elif node.conversion == ord("r"):
            value = repr(value)
        elif node.conversion == ord("a"):
            value = ascii(value)
        spec = self._eval(node.format_spec, env) if node.format_spec else ""
        if not isinstance(spec, str) or _WIDE_SPEC.search(spec):
            raise _Unfoldable
        return format(value, spec)

    def _index(self, node: ast.expr, env: dict[str, object]) -> object:
        if not isinstance(node, ast.Slice):
            return self._eval(node, env)
        parts = (node.lower, node.upper, node.step)
        return slice(*(None if p is None else self._number(p, env) for p in parts))

    def _call(self, node: ast.Call, env: dict[str, object]) -> object:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _STR_METHODS:
            try:
                receiver = self._eval(func.value, env)
            except _Unfoldable:
                receiver = None  # `base64.b64decode`: a module, not a value; resolved below
            if isinstance(receiver, str | bytes):
                return self._method(receiver, func.attr, [self._eval(a, env) for a in node.args])
        name = self._resolve(func) or ""
        if name == "map" and len(node.args) == 2:
            convert = self._resolve(node.args[0]) or ""
            return _bounded(_convert(convert, item) for item in self._sequence(node.args[1], env))
        if name == "reversed" and len(node.args) == 1:
            return tuple(reversed(self._sequence(node.args[0], env)))
        return self._function(name, [self._eval(a, env) for a in node.args])

    def _method(self, receiver: str | bytes, name: str, args: list[object]) -> object:
        if name == "format" and _WIDE_BRACE.search(str(receiver)):
            raise _Unfoldable
        if name in ("decode", "encode") and args and str(args[0]).lower() not in _SAFE_CODECS:
            raise _Unfoldable
        _guard_product(receiver, tuple(args))
        return getattr(receiver, name)(*args)

    def _function(self, name: str, args: list[object]) -> object:
        if name in _DECODERS and len(args) == 1:
            return _DECODERS[name](args[0])
        if name in ("codecs.decode", "codecs.encode") and len(args) == 2 and str(args[1]).lower() in _SAFE_CODECS:
            return _codec(name == "codecs.decode", args[0], str(args[1]))
        if len(args) == 1 and name in ("chr", "str"):
            return _convert(name, args[0])
        if name in ("bytes", "bytearray") and len(args) == 1 and isinstance(args[0], tuple):
            if not all(isinstance(b, int) for b in args[0]):
                raise _Unfoldable
            return bytes(b for b in args[0] if isinstance(b, int))
        encoding = args[1] if len(args) == 2 else None
        if name in ("bytes", "bytearray", "str") and isinstance(encoding, str):
            text = args[0]
            if isinstance(text, str) and name != "str":
                return text.encode(encoding)
            if isinstance(text, bytes) and name == "str":
                return text.decode(encoding)
        raise _Unfoldable

    def _sequence(self, node: ast.expr, env: dict[str, object]) -> tuple[object, ...]:
        value = self._eval(node, env)
        if isinstance(value, str | bytes | tuple):
            return tuple(value)
        raise _Unfoldable

    def _comprehension(self, node: ast.GeneratorExp | ast.ListComp, env: dict[str, object]) -> object:
        if len(node.generators) != 1 or node.generators[0].ifs or not isinstance(node.generators[0].target, ast.Name):
            raise _Unfoldable
        target = node.generators[0].target.id
        items = self._sequence(node.generators[0].iter, env)
        return _bounded(self._eval(node.elt, {**env, target: item}) for item in items)


# -- suspicious code: the Python scanner ------------------------------------------------------------------


class _Scanner(ast.NodeVisitor):
    """Walks one module and records every feature, with imports and aliases resolved to dotted names."""

    def __init__(self, tree: ast.Module, text: str, depth: int) -> None:
        self.lines = _source_lines(text)
        self.features: list[_Feature] = []
        self._payload_depth = depth
        self._function_depth = 0
        self._main_guard = False
        self._consumed: set[int] = set()  # nodes already reported by a more specific rule
        self.aliases = _aliases(tree)
        # A name bound by assignment, argument or definition hides a builtin of that name, and inside a
        # function an import too, in its own scope only: `t = Template()` in one function does not hide
        # `import typing as t`. At module level imports win, so that `if 0: sys = None` hides nothing.
        module_names = _scope_names(tree.body) - set(self.aliases)
        self._scopes: list[dict[str, str | None]] = [dict.fromkeys(module_names)]
        self._values: dict[str, str] = {}
        self.folder = _Folder(self.qualname)
        single = _single_assignments(tree)
        self.folder.env = _constant_env(single, self.folder)
        _value_aliases(single, self.qualname, self._values)

    # Names ------------------------------------------------------------------------------------------------

    def qualname(self, node: ast.expr) -> str | None:
        """The dotted name `node` refers to, through imports, aliases, `getattr`, `vars` and `__dict__`."""
        if isinstance(node, ast.Name):
            if node.id in self._values:
                return self._values[node.id]
            for scope in reversed(self._scopes):
                if node.id in scope:
                    return scope[node.id]
            if node.id in self.aliases:
                return self.aliases[node.id]
            if node.id == "__builtins__":
                return "builtins"
            return node.id if node.id in _BUILTIN_NAMES else None
        if isinstance(node, ast.Attribute):
            base = self.qualname(node.value)
            return _join(base, node.attr) if base else None
        if isinstance(node, ast.Subscript):
            return self._subscript_name(node)
        if isinstance(node, ast.Call):
            return self._call_name(node)
        return None

    def _subscript_name(self, node: ast.Subscript) -> str | None:
        base, key = self.qualname(node.value), self.folder.fold(node.slice)
        if base is None or not isinstance(key, str):
            return None
        if base == "sys.modules":
            return key
        if base == "builtins" or base.endswith(".__dict__"):
            return _join(base.removesuffix(".__dict__"), key)
        return None

    def _call_name(self, node: ast.Call) -> str | None:
        func = self.qualname(node.func)
        first = self.folder.fold(node.args[0]) if node.args else None
        if (func in _IMPORTERS or func == "sys.modules.get") and isinstance(first, str):
            return first
        if func == "getattr" and len(node.args) >= 2:
            base, attr = self.qualname(node.args[0]), self.folder.fold(node.args[1])
            return _join(base, attr) if base and isinstance(attr, str) else None
        if func and func.endswith(".__getattribute__") and isinstance(first, str):
            return _join(func.removesuffix(".__getattribute__"), first)
        if func == "vars" and len(node.args) == 1:
            base = self.qualname(node.args[0])
            return f"{base}.__dict__" if base else None
        return None

    # Recording --------------------------------------------------------------------------------------------

    def add(self, category: str, detail: str, node: ast.expr | ast.stmt) -> None:
        line = node.lineno
        excerpt = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        self.features.append(_Feature(category, detail, line, _span(node), excerpt))

    def visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            return  # docstrings and bare strings say nothing about what the code does
        if isinstance(node, ast.expr) and not isinstance(node, ast.Name) and id(node) not in self._consumed:
            value = self.folder.fold(node)
            if isinstance(value, str | bytes | tuple):
                self._strings(value, node)
                return  # a folded constant: its parts were folded with it
        stored = isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)  # a binding, not a use
        if isinstance(node, ast.Name | ast.Attribute | ast.Subscript | ast.Call) and not stored:
            self._reference(node)
        super().visit(node)

    def _strings(self, value: object, node: ast.expr) -> None:
        texts = value if isinstance(value, tuple) else (value,)
        for text in texts:
            if isinstance(text, str | bytes):
                decoded = text.decode("latin-1") if isinstance(text, bytes) else text
                for category, detail in _string_features(decoded):
                    self.add(category, detail, node)

    def _reference(self, node: ast.Name | ast.Attribute | ast.Subscript | ast.Call) -> None:
        if isinstance(node, ast.Attribute) and node.attr in _FRAME_ATTRS:
            self.add(_RUNNER, f"frame attribute .{node.attr}", node)
        name = self.qualname(node)
        if name is None:
            return
        prefixes = [".".join(name.split(".")[:i]) for i in range(name.count(".") + 1, 0, -1)]
        for prefix in prefixes:
            if prefix in _REFERENCES:
                self.add(_REFERENCES[prefix], prefix, node)
                break
        if name in _IMPORT_TIME and self._at_import_time():
            self.add(_EXIT, f"{name} at import time", node)

    def _at_import_time(self) -> bool:
        return self._function_depth == 0 and not self._main_guard

    # Statements -------------------------------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if _is_test_framework(alias.name) or (alias.name == "doctest" and self._at_import_time()):
                self.add(_IMPORT, f"import {alias.name.split('.')[0]}", node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and not node.level and _is_test_framework(node.module):
            self.add(_IMPORT, f"import {node.module.split('.')[0]}", node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        # Decorators and defaults run at import time; the body runs when called.
        for part in [*getattr(node, "decorator_list", []), *node.args.defaults, *node.args.kw_defaults]:
            if part is not None:
                self.visit(part)
        body = node.body if isinstance(node.body, list) else [node.body]
        self._function_depth += 1
        self._scopes.append(self._function_scope(node, body))
        for statement in body:
            self.visit(statement)
        self._scopes.pop()
        self._function_depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def _function_scope(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, body: list[ast.stmt] | list[ast.expr]
    ) -> dict[str, str | None]:
        """Local names hide outer ones, except an argument whose default is a module: `def f(s=sys)`."""
        scope: dict[str, str | None] = dict.fromkeys(_scope_names(body, node.args))
        positional = [*node.args.posonlyargs, *node.args.args]
        pairs = [*zip(positional[len(positional) - len(node.args.defaults):], node.args.defaults, strict=True),
                 *zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True)]
        for argument, default in pairs:
            if default is not None and (name := self.qualname(default)):
                scope[argument.arg] = name
        return scope

    def visit_If(self, node: ast.If) -> None:
        if not _is_main_guard(node.test):
            self.generic_visit(node)
            return
        guarded, self._main_guard = self._main_guard, True
        for statement in node.body:
            self.visit(statement)
        self._main_guard = guarded
        for statement in node.orelse:
            self.visit(statement)

    def visit_Raise(self, node: ast.Raise) -> None:
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        name = self.qualname(exc) if exc is not None else None
        if name in ("SystemExit", "KeyboardInterrupt") and self._at_import_time():
            self.add(_EXIT, f"raise {name} at import time", node)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete) -> None:
        targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
        for target in targets:
            self._patch(target)
            self.visit(target)
        value = getattr(node, "value", None)  # annotations are not visited: naming a type does nothing
        if value is not None:
            self.visit(value)

    visit_AugAssign = visit_Assign
    visit_AnnAssign = visit_Assign
    visit_Delete = visit_Assign

    def _patch(self, target: ast.expr) -> None:
        if isinstance(target, ast.Tuple | ast.List | ast.Starred):
            for part in target.elts if not isinstance(target, ast.Starred) else [target.value]:
                self._patch(part)
        elif isinstance(target, ast.Attribute):
            base = self.qualname(target.value)
            if base is not None:
                self.add(_PATCH, f"assigns {base}.{target.attr}", target)
            elif target.attr == "__code__":
                self.add(_PATCH, "assigns a function's __code__", target)
        elif isinstance(target, ast.Subscript):
            base = self.qualname(target.value) or ""
            if base in ("builtins", "sys.modules") or base.endswith(".__dict__"):
                self.add(_PATCH, f"assigns an item of {base}", target)

    def visit_Call(self, node: ast.Call) -> None:
        func = self.qualname(node.func) or ""
        if func in _IMPORTERS and node.args:
            self._dynamic_import(node)
        elif func in ("setattr", "delattr") and node.args and (base := self.qualname(node.args[0])):
            self.add(_PATCH, f"{func} on {base}", node)
        elif func in _FD_OPENERS and node.args and isinstance(self.folder.fold(node.args[0]), int):
            self.add(_RAWFD, f"{func} of a file descriptor number", node)
        elif func in _PICKLES and node.args and isinstance(self.folder.fold(node.args[0]), bytes):
            self.add(_DYNAMIC, f"{func} of a constant", node)
        elif func in ("exec", "eval", "compile") and node.args:
            self._payload(node)
        self.generic_visit(node)

    def _dynamic_import(self, node: ast.Call) -> None:
        if _within_package(node):
            return
        name = self.folder.fold(node.args[0])
        if isinstance(name, str):
            if _is_test_framework(name):
                self.add(_IMPORT, f"import {name.split('.')[0]}", node)
                self._consumed.add(id(node.args[0]))
        elif not self._package_prefixed(node.args[0]):
            self.add(_IMPORT, "import of a computed module name", node)

    def _package_prefixed(self, node: ast.expr) -> bool:
        """`f"myapp.plugins.{name}"`: a plugin loader inside a known package, not a hidden import."""
        while isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            node = node.left
        if isinstance(node, ast.JoinedStr) and node.values:
            node = node.values[0]
        prefix = self.folder.fold(node)
        if not isinstance(prefix, str) or _RUNNER_TEXT.search(prefix):
            return False
        package, dot, _ = prefix.partition(".")
        return bool(package and dot)

    def _payload(self, node: ast.Call) -> None:
        """Code handed to exec/eval as a constant is scanned too, reported at the call."""
        source = self.folder.fold(node.args[0])
        if not isinstance(source, str | bytes) or self._payload_depth >= _MAX_PAYLOAD_DEPTH:
            return
        text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
        inner = _python_features(text, self._payload_depth + 1) or []
        for feature in inner:
            self.add(feature.category, f"in exec payload: {feature.detail}", node)


def _within_package(call: ast.Call) -> bool:
    """`import_module(name, __name__)`: the lazy-import idiom of a package's own submodules."""
    package = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "package"), None)
    return isinstance(package, ast.Name) and package.id in ("__name__", "__package__")


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Import aliases anywhere in the module: local name -> dotted name."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                aliases[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name != "*":
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _scope_names(body: list[ast.stmt] | list[ast.expr], arguments: ast.arguments | None = None) -> set[str]:
    """Names one scope binds other than by import (nested functions and classes are their own scopes)."""
    names: set[str] = set()
    if arguments is not None:
        every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]
        names.update(a.arg for a in every if a is not None)
    declared: set[str] = set()
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            continue
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            declared.update(node.names)
        stack.extend(ast.iter_child_nodes(node))
    return names - declared


def _single_assignments(tree: ast.Module) -> list[tuple[str, ast.expr]]:
    """`name = value` for names bound exactly once in the module, in source order."""
    stores = Counter(n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
    nodes = sorted(
        (n for n in ast.walk(tree) if isinstance(n, ast.Assign | ast.AnnAssign)), key=lambda n: (n.lineno, n.col_offset)
    )
    pairs = [_simple_assignment(n) for n in nodes]
    return [(name, value) for name, value in pairs if name and value is not None and stores[name] == 1]


def _value_aliases(
    single: list[tuple[str, ast.expr]], qualname: Callable[[ast.expr], str | None], values: dict[str, str]
) -> None:
    """Names assigned once to a module or a function of one: `s = __import__("sys")`, `ex = exec`.

    `values` is filled in place, in source order, so that `s = sys` then `m = s.modules` chain.
    """
    for name, value in single:
        if target := qualname(value):
            values[name] = target


def _constant_env(single: list[tuple[str, ast.expr]], folder: _Folder) -> dict[str, object]:
    """Names assigned once, to a value the folder computes: `P = "py"; P + "test"` folds."""
    for name, value in single:
        folded = folder.fold(value)
        if folded is not None:
            folder.env[name] = folded
    return folder.env


def _dedupe(features: list[_Feature]) -> list[_Feature]:
    """Drop features nested in a feature of the same category (`sys.modules` inside `sys.modules.get`).

    A sweep by start position (outer spans sort before the spans they contain), so that a file with
    thousands of features stays linear rather than quadratic.
    """
    ordered = sorted(dict.fromkeys(features), key=lambda f: (f.category, f.span[:2], -f.span[2], -f.span[3]))
    kept: list[_Feature] = []
    for _, group in itertools.groupby(ordered, key=lambda f: f.category):
        covering: list[_Feature] = []
        for feature in group:
            covering = [c for c in covering if c.span[2:] >= feature.span[:2]]
            if not any(_contains(c.span, feature.span) for c in covering):
                kept.append(feature)
            covering.append(feature)
    return kept


def _python_features(text: str, depth: int = 0) -> list[_Feature] | None:
    try:
        tree = ast.parse(text)
        scanner = _Scanner(tree, text, depth)
        scanner.visit(tree)
    except (SyntaxError, ValueError, RecursionError):
        return None  # unparsable (or absurdly nested): the caller falls back to lines
    return _dedupe(scanner.features)


# -- suspicious code: the line fallback (JS/TS, unparsable Python) ----------------------------------------

_QUOTED = re.compile(r"""(['"`])((?:\\.|(?!\1).)*)\1""")
_JS_PATTERNS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    (_RUNNER, "process.env of a test runner", re.compile(
        r"process\.env(?:\.|\[\s*['\"`])\w*(?:JEST|VITEST|MOCHA|JASMINE|PYTEST|ONLOOP)\w*", re.I)),
    (_RUNNER, "NODE_ENV compared with 'test'", re.compile(
        r"NODE_ENV\s*[!=]==?\s*['\"`]test['\"`]|['\"`]test['\"`]\s*[!=]==?\s*process\.env\.NODE_ENV")),
    (_RUNNER, "require.cache or module graph", re.compile(r"\brequire\.cache\b|\bmodule\.(?:parent|children)\b")),
    (_RUNNER, "stack inspection", re.compile(
        r"\bnew\s+Error\(\)\.stack\b|\bError\.(?:captureStackTrace|prepareStackTrace)\b|\barguments\.callee\b")),
    (_RUNNER, "import.meta of a test runner", re.compile(r"\bimport\.meta\.(?:vitest|jest)\b")),
    (_PATCH, "global test API assigned", re.compile(
        r"\b(?:global|globalThis|window)\s*\.\s*(?:expect|it|test|describe|jest|vi)\s*=(?!=)|"
        r"Object\.defineProperty\(\s*(?:global|globalThis)\b")),
    (_EXIT, "process exit hook", re.compile(
        r"process\.on\(\s*['\"`](?:exit|beforeExit)['\"`]|\bprocess\.reallyExit\b|process\.kill\(\s*process\.ppid")),
    (_DYNAMIC, "eval or Function", re.compile(
        r"(?<![\w.])eval\s*\(|\bnew\s+Function\s*\(|(?<![\w.])Function\s*\(\s*['\"`]|\bvm\.run\w*\s*\(|"
        r"\bset(?:Timeout|Interval)\(\s*['\"`]")),
    (_RAWFD, "write to fd 1 or 2", re.compile(r"\bfs\.writeSync\(\s*[12]\b")),
)
_PY_PATTERNS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    (_RUNNER, "sys.modules or stack inspection", re.compile(
        r"\bsys\.modules\b|\b_getframe\b|\binspect\.(?:stack|currentframe|getouterframes|trace)\b|\bextract_stack\b|"
        r"\bwalk_stack\b|\bf_back\b|\btb_frame\b|\bget_referrers\b|\bget_objects\b")),
    (_IMPORT, "test framework import", re.compile(r"^\s*(?:import|from)\s+(?:_?pytest|unittest|nose2?)\b")),
    (_PATCH, "tracing, hooks, builtins or ctypes", re.compile(
        r"\b(?:settrace|setprofile|addaudithook|faulthandler|ctypes|atexit)\b|\bbuiltins\b|__builtins__")),
    (_EXIT, "os._exit", re.compile(r"\bos\._exit\b")),
    (_DYNAMIC, "exec, eval, compile or dynamic import", re.compile(
        r"(?<![\w.])(?:exec|eval|compile|__import__)\s*\(|\bmarshal\.loads?\b|\bimport_module\s*\(")),
    (_RAWFD, "raw file descriptor", re.compile(r"\bos\.(?:write|dup2?|fdopen)\s*\(")),
)
_JS_SUFFIXES = frozenset({".js", ".jsx", ".ts", ".tsx", ".mjs", ".cjs", ".mts", ".cts"})
_PY_SUFFIXES = frozenset({".py", ".pyw"})
_STARTUP_FILES = frozenset({"sitecustomize.py", "usercustomize.py"})
_PTH_IMPORT = (_PATCH, "executable line in a .pth file", re.compile(r"^\s*import\s"))


def _line_features(text: str, patterns: Iterable[tuple[str, str, re.Pattern[str]]]) -> list[_Feature]:
    features = []
    for number, line in enumerate(text.splitlines(), 1):
        span = (number, 0, number, len(line))
        excerpt = line.strip()
        found = [(c, d) for c, d, p in patterns if p.search(line)]
        found += [f for m in _QUOTED.finditer(line) for f in _string_features(m.group(2))]
        features += [_Feature(c, d, number, span, excerpt) for c, d in dict.fromkeys(found)]
    return features


# -- suspicious code: the entry point ---------------------------------------------------------------------


def suspicious_code(path: str, before: str | None, after: str) -> list[ReviewFinding]:
    """Findings for mechanisms that `after` has more of than `before` (None: the file is new)."""
    pure = PurePosixPath(path)
    findings = []
    if pure.name in _STARTUP_FILES and before is None:
        evidence = f"{_PATCH}: {pure.name} runs at every interpreter start, before any test"
        findings.append(ReviewFinding("suspicious_code", path, evidence))
    old, new = _features(pure.suffix, before or "", after)
    lines = [list(group) for _, group in itertools.groupby(_new_features(old, new), lambda f: f.line)]
    findings += [_code_finding(path, features) for features in lines[:_MAX_REPORTED]]
    if len(lines) > _MAX_REPORTED:
        rest = f"... and {len(lines) - _MAX_REPORTED} more lines with suspicious code"
        findings.append(ReviewFinding("suspicious_code", path, rest))
    return findings


def _features(suffix: str, before: str, after: str) -> tuple[list[_Feature], list[_Feature]]:
    """Features of both texts, extracted the same way (both by AST, or both by lines), so counts compare."""
    if suffix in _PY_SUFFIXES:
        old, new = _python_features(before), _python_features(after)
        if old is not None and new is not None:
            return old, new
        return _line_features(before, _PY_PATTERNS), _line_features(after, _PY_PATTERNS)
    if suffix in _JS_SUFFIXES:
        return _line_features(before, _JS_PATTERNS), _line_features(after, _JS_PATTERNS)
    if suffix == ".pth":
        return _line_features(before, [_PTH_IMPORT]), _line_features(after, [_PTH_IMPORT])
    return [], []


def _new_features(old: list[_Feature], new: list[_Feature]) -> list[_Feature]:
    """For each feature whose count grew, that many occurrences, preferring lines the base did not have."""
    counts = Counter(f.key for f in old)
    old_lines: dict[tuple[str, str], set[str]] = {}
    for feature in old:
        old_lines.setdefault(feature.key, set()).add(feature.excerpt)
    chosen: list[_Feature] = []
    for key, group in itertools.groupby(sorted(new, key=lambda f: f.key), lambda f: f.key):
        items = sorted(group, key=lambda f: f.span)
        extra = len(items) - counts[key]
        if extra > 0:
            seen = old_lines.get(key, set())
            chosen += sorted(items, key=lambda f: (f.excerpt in seen, f.span))[:extra]
    return sorted(chosen, key=lambda f: (f.line, f.category, f.detail))


def _code_finding(path: str, features: list[_Feature]) -> ReviewFinding:
    what = "; ".join(dict.fromkeys(f"{f.category} ({f.detail})" for f in features))
    excerpt = _one_line(features[0].excerpt)
    evidence = _one_line(f"line {features[0].line}: {what}: {excerpt!r}", _EVIDENCE)
    return ReviewFinding("suspicious_code", path, evidence, after=excerpt)
