"""`changed_expectations`: an existing test that now expects something else sends the run to review.

Changing an expected value changes the spec, not the code, and only a human may change the spec. The
comparison must therefore ignore everything that is not an expectation, or it would cry wolf on every
refactoring of a test:

- Each expectation is keyed by its normalised `ast.dump` (layout, comments and `u""` prefixes do not
  count; an assertion's failure message does not either), and the keys of the base and of the new text
  are compared as multisets. Adding an assertion, reformatting, renaming a test or moving an assertion
  elsewhere leaves every old key present, so nothing triggers.
- An expectation is an `assert`, an assertion call (`assertEqual`, `pytest.raises`, `expect(x).to...`),
  a decorator argument (one per parametrize case), a module or class constant (one per entry of a dict
  or list, so that adding a case is fine), and a local literal that an assertion uses
  (`expected = 5; assert f() == expected`).
- Each missing key is paired with its most similar added one, preferably in the same test, so that the
  reviewer sees "was X, now Y" rather than two unrelated lines. The search is capped
  (`_MAX_CANDIDATES`) so that a rewritten file stays cheap.

Text that is not Python, or Python that does not parse, falls back to lines: each line with an assertion
word is one expectation, with whitespace and quote style normalised away.
"""

from __future__ import annotations

import ast
import difflib
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from onloop.policy.review._finding import EVIDENCE, MAX_REPORTED, ReviewFinding, one_line, past_limit
from onloop.policy.review._source import parsed, simple_assignment, source_lines, source_segment

_MAX_CANDIDATES = 200  # replacements compared per missing expectation


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
    pairs = _pair(missing[:MAX_REPORTED], added)
    findings = [_expectation_finding(path, gone, replacement) for gone, replacement in pairs]
    if path.endswith(".py"):
        findings += _control_flow_added(path, before, after) + _subject_rebound(path, before, after)
    return findings + past_limit("expectation_changed", path, len(missing), "expectations changed or removed")


def _subject_rebound(path: str, before: str, after: str) -> list[ReviewFinding]:
    """Names the base imports from the code under test that the file now binds more often: a local
    `def add` after `from calc import add` (or a fallback in `except ImportError`, a parameter, an
    assignment) makes the tests exercise the test file's own code, every expectation unchanged."""
    old_tree, new_tree = parsed(before, lambda t: t), parsed(after, lambda t: t)
    if old_tree is None or new_tree is None:
        return []
    subjects = {name.rsplit(" as ", 1)[-1].rsplit(".", 1)[-1] for s in old_tree.body for name in _project_imports(s)}
    old, new = _bindings(old_tree), _bindings(new_tree)
    found = []
    for name in sorted(n for n in subjects if new[n] > old[n]):
        evidence = f"module: {name!r}, imported from the code under test, is bound again in the test file"
        found.append(ReviewFinding("expectation_changed", path, one_line(evidence, EVIDENCE)))
    return found


def _bindings(tree: ast.Module) -> Counter[str]:
    """Every binding of every name in the file: defs, classes, imports, assignments, loop and with
    targets, parameters, exception names."""
    counts: Counter[str] = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            counts[node.name] += 1
        elif isinstance(node, ast.Import | ast.ImportFrom):
            counts.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            counts[node.id] += 1
        elif isinstance(node, ast.arg):
            counts[node.arg] += 1
        elif isinstance(node, ast.ExceptHandler) and node.name:
            counts[node.name] += 1
    return counts


# What stops a test before its assertions: an expectation kept word for word behind an early `return`,
# a `raise`, or `if False:` is present and never checked.
_EXITS = (ast.Return, ast.Raise, ast.Break, ast.Continue)


def _control_flow_added(path: str, before: str, after: str) -> list[ReviewFinding]:
    """Existing tests (by qualified name) that gained an early exit or a constant condition."""
    old, new = parsed(before, _exits_per_test), parsed(after, _exits_per_test)
    if old is None or new is None:
        return []
    found = []
    for name in sorted(set(old) & set(new)):
        if new[name][0] > old[name][0]:
            evidence = (f"{name}: control flow added (an early return, raise or constant condition): its "
                        "assertions may no longer run")
            found.append(ReviewFinding("expectation_changed", path, one_line(evidence, EVIDENCE),
                                       after=one_line(new[name][1])))
    return found


def _exits_per_test(tree: ast.Module) -> dict[str, tuple[int, str]]:
    """Test name -> (number of early exits and constant conditions in its own body, the first one)."""
    tests: dict[str, tuple[int, str]] = {}
    for owner, func in _test_functions(tree):
        exits = [n for n in _own_nodes(func) if isinstance(n, _EXITS) or (
            isinstance(n, ast.If | ast.While | ast.IfExp) and isinstance(n.test, ast.Constant))]
        first = ast.unparse(exits[0]).split("\n")[0] if exits else ""
        tests[f"{owner}{func.name}"] = (len(exits), first)
    return tests


def _test_functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            yield "", node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith(("test", "setUp")):
                    yield f"{node.name}.", item


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
        return ReviewFinding("expectation_changed", path, one_line(evidence, EVIDENCE), before=gone.excerpt)
    evidence = (
        f"{gone.context}: {gone.what} changed (line {gone.line} -> {replacement.line}): "
        f"{gone.excerpt!r} -> {replacement.excerpt!r}"
    )
    return ReviewFinding(
        "expectation_changed", path, one_line(evidence, EVIDENCE), before=gone.excerpt, after=replacement.excerpt
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
        self.lines = source_lines(text)
        self._users_of: dict[str, set[str]] | None = None
        self.found: list[_Expectation] = []
        self._context: list[str] = []
        self._referenced: list[set[str]] = [set()]

    def _add(self, key: str, what: str, node: ast.AST, excerpt: str = "", context: str = "") -> None:
        excerpt = excerpt or self._segment(node)
        context = context or ".".join(self._context) or "module"
        line = getattr(node, "lineno", 0)
        self.found.append(_Expectation(key, what, context, line, one_line(excerpt)))

    def _segment(self, node: ast.AST) -> str:
        return source_segment(self.lines, node)

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
        """Module and class bodies: constant assignments are expectations, and so are imports of the code
        under test (a test that now imports `calc_v2` as `calc` checks something else); everything else
        is visited."""
        for statement in body:
            for alias in _project_imports(statement):
                self._add(f"import {alias}", "import of the code under test", statement)
            target, value = simple_assignment(statement)
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
        """`expected = 5` then `assert f() == expected`: the literal is the expectation. So are the
        inputs an assertion uses (`a, b = 2, 3` then `assert add(a, b) == 5`): changing what a test
        feeds the code changes what it checks as much as changing what it expects."""
        for node in _own_nodes(func):
            target, value = simple_assignment(node)
            if target in self._referenced[-1] and value is not None and _literalish(value):
                self._constant(target, value, "expected value", node)
            for name, part in _unpacked(node):
                if name in self._referenced[-1] and _literalish(part):
                    self._add(f"{name} = {_key(part)}", "input value", part, f"{name} = {self._segment(part)}")


# Modules a test imports that are not what it tests: the standard library and the test tooling.
_TOOLING = frozenset({"pytest", "_pytest", "unittest", "mock", "hypothesis", "nose", "nose2", "pytest_mock",
                      "freezegun", "responses", "requests_mock", "faker", "factory", "parameterized", "ddt"})


def _project_imports(statement: ast.stmt) -> list[str]:
    """`import x as y` / `from x import a as b` of a module that is neither stdlib nor test tooling, as
    comparable strings (a changed source or a changed alias both count)."""
    if isinstance(statement, ast.Import):
        pairs = [(a.name, a.name, a.asname) for a in statement.names]
    elif isinstance(statement, ast.ImportFrom) and statement.level == 0 and statement.module:
        pairs = [(statement.module, f"{statement.module}.{a.name}", a.asname) for a in statement.names]
    elif isinstance(statement, ast.ImportFrom):
        pairs = [("." * statement.level, f"{'.' * statement.level}{statement.module or ''}.{a.name}", a.asname)
                 for a in statement.names]
    else:
        return []
    found = []
    for module, imported, alias in pairs:
        top = module.split(".")[0]
        if top and (top in sys.stdlib_module_names or top in _TOOLING):
            continue
        found.append(f"{imported} as {alias}" if alias else imported)
    return found


def _unpacked(node: ast.AST) -> list[tuple[str, ast.expr]]:
    """`a, b = 2, 3` as [("a", 2), ("b", 3)]; anything else as []."""
    if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
        return []
    target, value = node.targets[0], node.value
    if not (isinstance(target, ast.Tuple | ast.List) and isinstance(value, ast.Tuple | ast.List)):
        return []
    if len(target.elts) != len(value.elts):
        return []
    return [(t.id, v) for t, v in zip(target.elts, value.elts, strict=True) if isinstance(t, ast.Name)]


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


def _python_expectations(text: str) -> list[_Expectation] | None:
    """The expectations of a Python test module, or None if it does not parse (the caller uses lines)."""

    def collect(tree: ast.Module) -> list[_Expectation]:
        collector = _Expectations(tree, text)
        collector.visit(tree)
        return collector.found

    return parsed(text, collect)


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
            found.append(_Expectation(key, "assertion line", context, number, one_line(line.strip())))
    return found
