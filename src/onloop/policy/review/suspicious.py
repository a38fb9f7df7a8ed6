"""`suspicious_code`: code outside the tests that reaches for the test machinery sends the run to review.

Code that asks whether it runs under a test, patches the test framework or the interpreter, runs dynamic
code or reads test reports can pass the gates without doing the work. Such code has legitimate uses too,
so it is not rolled back; a human decides. To keep existing code silent, features are counted in the
base text and in the new text, and only a count that grew is reported, with the occurrences on lines
the base did not have preferred as evidence.

Python goes through the AST scanner (`scanner.py`), which resolves names and folds constants; JS/TS,
`.pth` files and Python that does not parse go through the regexes below, one line at a time. Both texts
of a file are always read the same way (both by AST, or both by lines), or their counts would not
compare. A new `sitecustomize.py` or `usercustomize.py` is a finding by its name alone: it runs at every
interpreter start, before any test.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import PurePosixPath

from onloop.policy.review._finding import EVIDENCE, MAX_REPORTED, ReviewFinding, one_line, past_limit
from onloop.policy.review.features import DYNAMIC, EXIT, IMPORT, PATCH, RAWFD, RUNNER, STATE, Feature, string_features
from onloop.policy.review.scanner import python_features

# -- the line fallback (JS/TS, unparsable Python) -------------------------------------------------------

_QUOTED = re.compile(r"""(['"`])((?:\\.|(?!\1).)*)\1""")
_JS_PATTERNS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    (RUNNER, "process.env of a test runner", re.compile(
        r"process\.env(?:\.|\[\s*['\"`])\w*(?:JEST|VITEST|MOCHA|JASMINE|PYTEST|ONLOOP)\w*", re.I)),
    (RUNNER, "NODE_ENV compared with 'test'", re.compile(
        r"NODE_ENV\s*[!=]==?\s*['\"`]test['\"`]|['\"`]test['\"`]\s*[!=]==?\s*process\.env\.NODE_ENV")),
    (RUNNER, "require.cache or module graph", re.compile(r"\brequire\.cache\b|\bmodule\.(?:parent|children)\b")),
    (RUNNER, "stack inspection", re.compile(
        r"\bnew\s+Error\(\)\.stack\b|\bError\.(?:captureStackTrace|prepareStackTrace)\b|\barguments\.callee\b")),
    (RUNNER, "import.meta of a test runner", re.compile(r"\bimport\.meta\.(?:vitest|jest)\b")),
    (PATCH, "global test API assigned", re.compile(
        r"\b(?:global|globalThis|window)\s*\.\s*(?:expect|it|test|describe|jest|vi)\s*=(?!=)|"
        r"Object\.defineProperty\(\s*(?:global|globalThis)\b")),
    (EXIT, "process exit hook", re.compile(
        r"process\.on\(\s*['\"`](?:exit|beforeExit)['\"`]|\bprocess\.reallyExit\b|process\.kill\(\s*process\.ppid")),
    (DYNAMIC, "eval or Function", re.compile(
        r"(?<![\w.])eval\s*\(|\bnew\s+Function\s*\(|(?<![\w.])Function\s*\(\s*['\"`]|\bvm\.run\w*\s*\(|"
        r"\bset(?:Timeout|Interval)\(\s*['\"`]")),
    (RAWFD, "write to fd 1 or 2", re.compile(r"\bfs\.writeSync\(\s*[12]\b")),
)
_PY_PATTERNS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    (RUNNER, "sys.modules or stack inspection", re.compile(
        r"\bsys\.modules\b|\b_getframe\b|\binspect\.(?:stack|currentframe|getouterframes|trace)\b|\bextract_stack\b|"
        r"\bwalk_stack\b|\bf_back\b|\btb_frame\b|\bget_referrers\b|\bget_objects\b")),
    (IMPORT, "test framework import", re.compile(r"^\s*(?:import|from)\s+(?:_?pytest|unittest|nose2?)\b")),
    (PATCH, "tracing, hooks, builtins or ctypes", re.compile(
        r"\b(?:settrace|setprofile|addaudithook|faulthandler|ctypes|atexit)\b|\bbuiltins\b|__builtins__")),
    (EXIT, "os._exit", re.compile(r"\bos\._exit\b")),
    (DYNAMIC, "exec, eval, compile or dynamic import", re.compile(
        r"(?<![\w.])(?:exec|eval|compile|__import__)\s*\(|\bmarshal\.loads?\b|\bimport_module\s*\(")),
    (RAWFD, "raw file descriptor", re.compile(r"\bos\.(?:write|dup2?|fdopen)\s*\(")),
)
_JS_SUFFIXES = frozenset({".js", ".jsx", ".ts", ".tsx", ".mjs", ".cjs", ".mts", ".cts"})
_PY_SUFFIXES = frozenset({".py", ".pyw"})
_STARTUP_FILES = frozenset({"sitecustomize.py", "usercustomize.py"})
_PTH_IMPORT = (PATCH, "executable line in a .pth file", re.compile(r"^\s*import\s"))
_LINE_PATTERNS: dict[str, tuple[tuple[str, str, re.Pattern[str]], ...]] = {
    **dict.fromkeys(_PY_SUFFIXES, _PY_PATTERNS),
    **dict.fromkeys(_JS_SUFFIXES, _JS_PATTERNS),
    ".pth": (_PTH_IMPORT,),
}


def _line_features(text: str, patterns: Iterable[tuple[str, str, re.Pattern[str]]]) -> list[Feature]:
    """Each pattern that matches a line, and each quoted string on it that names the runner or a report."""
    features = []
    for number, line in enumerate(text.splitlines(), 1):
        span = (number, 0, number, len(line))
        excerpt = line.strip()
        found = [(c, d) for c, d, p in patterns if p.search(line)]
        found += [f for m in _QUOTED.finditer(line) for f in string_features(m.group(2))]
        features += [Feature(c, d, number, span, excerpt) for c, d in dict.fromkeys(found)]
    return features


# -- the entry point ------------------------------------------------------------------------------------


def suspicious_code(path: str, before: str | None, after: str) -> list[ReviewFinding]:
    """Findings for mechanisms that `after` has more of than `before` (None: the file is new)."""
    pure = PurePosixPath(path)
    findings = []
    if pure.name in _STARTUP_FILES and before is None:
        evidence = f"{PATCH}: {pure.name} runs at every interpreter start, before any test"
        findings.append(ReviewFinding("suspicious_code", path, evidence))
    old, new = _features(pure.suffix, before or "", after)
    return findings + _findings(path, [f for f in _new_features(old, new) if f.category != STATE])


# In a test file, naming pytest, importing it and inspecting things is the job; what is not: changing
# the code under test or the interpreter for every test (a test module patching `calc.add` at import,
# collected first, makes every other test pass), loading plugins, ending the process, dynamic code.
_TEST_FILE_CATEGORIES = frozenset({PATCH, EXIT, DYNAMIC, RAWFD, STATE})
_PLUGIN_LOADING = (PATCH, "loads or registers pytest plugins", re.compile(
    r"^\s*pytest_plugins\s*[:=+]|\bpluginmanager\b|\bpytest11\b"))
# Patches a test starts without a fixture to undo them: they outlive the test into every later one.
_UNSCOPED_PATCH = (PATCH, "a patch no fixture undoes", re.compile(
    r"\bMonkeyPatch\s*\(|\bpatch(?:\.object|\.dict|\.multiple)?\s*\(.*\)\s*\.start\s*\("))
# A test that reaches past itself into pytest: the session and its items (other tests' bodies, markers,
# rerun counts), pytest's hooks and report objects, its private package. A test needs none of it to
# test code; a test file that has it can turn other tests' failures into passes.
_SESSION = (PATCH, "reaches into pytest's session, other tests or its hooks", re.compile(
    r"\brequest\.session\b|\.node\.session\b|\bsession\.(?:items|testsfailed|testscollected|shouldfail|shouldstop)\b"
    r"|\.ihook\b|\.hook\.pytest_\w+|\bpytest_runtest_\w+\s*\(|\btestsfailed\b|\bexecution_count\b"
    r"|^\s*(?:from|import)\s+_pytest\b|\bTestReport\b|\.runtest\s*=|\.add_marker\s*\("))
_TEST_FILE_LINES = (_PLUGIN_LOADING, _UNSCOPED_PATCH, _SESSION)


def suspicious_test_code(path: str, before: str | None, after: str) -> list[ReviewFinding]:
    """For a test file (new, or changed): the mechanisms by which one test file changes what every other
    test sees, counted like `suspicious_code` (only what `after` has more of than `before`)."""
    pure = PurePosixPath(path)
    old, new = _features(pure.suffix, before or "", after)
    old += _line_features(before or "", _TEST_FILE_LINES)
    new += _line_features(after, _TEST_FILE_LINES)
    keep = [f for f in _new_features(old, new) if f.category in _TEST_FILE_CATEGORIES]
    return _findings(path, sorted(keep, key=lambda f: (f.line, f.category, f.detail)))


def _findings(path: str, features: list[Feature]) -> list[ReviewFinding]:
    lines = [list(group) for _, group in itertools.groupby(features, lambda f: f.line)]
    found = [_code_finding(path, group) for group in lines[:MAX_REPORTED]]
    return found + past_limit("suspicious_code", path, len(lines), "lines with suspicious code")


def _features(suffix: str, before: str, after: str) -> tuple[list[Feature], list[Feature]]:
    """Features of both texts, extracted the same way (both by AST, or both by lines), so counts compare."""
    if suffix in _PY_SUFFIXES:
        old, new = python_features(before), python_features(after)
        if old is not None and new is not None:
            return old, new
    patterns = _LINE_PATTERNS.get(suffix)
    if patterns is None:
        return [], []  # a language the detector does not read (see the package docstring)
    return _line_features(before, patterns), _line_features(after, patterns)


def _new_features(old: list[Feature], new: list[Feature]) -> list[Feature]:
    """For each feature whose count grew, that many occurrences, preferring lines the base did not have."""
    counts = Counter(f.key for f in old)
    old_lines: dict[tuple[str, str], set[str]] = {}
    for feature in old:
        old_lines.setdefault(feature.key, set()).add(feature.excerpt)
    chosen: list[Feature] = []
    for key, group in itertools.groupby(sorted(new, key=lambda f: f.key), lambda f: f.key):
        items = sorted(group, key=lambda f: f.span)
        extra = len(items) - counts[key]
        if extra > 0:
            seen = old_lines.get(key, set())
            chosen += sorted(items, key=lambda f: (f.excerpt in seen, f.span))[:extra]
    return sorted(chosen, key=lambda f: (f.line, f.category, f.detail))


def _code_finding(path: str, features: list[Feature]) -> ReviewFinding:
    """One finding per line: every new feature on it, then the line itself."""
    what = "; ".join(dict.fromkeys(f"{f.category} ({f.detail})" for f in features))
    excerpt = one_line(features[0].excerpt)
    evidence = one_line(f"line {features[0].line}: {what}: {excerpt!r}", EVIDENCE)
    return ReviewFinding("suspicious_code", path, evidence, after=excerpt)
