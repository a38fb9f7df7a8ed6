"""`suppressions_added`: silencing a lint or type gate's tool in the code is a change of what "passing" means.

A ruff gate with an undefined name at baseline, or a mypy gate, passes as soon as the agent writes
`# noqa` or `# type: ignore` on the line: the gate exists to refuse the code, and the code now tells the
tool not to look. Such comments have honest uses too (a third-party library without type stubs), so
they send the run to review rather than roll it back, and only for the tools the run's gates actually
run (a `# noqa` means nothing to a pytest-only workspace). Counted per line shape in the base and in
the new text, so existing suppressions never trigger.
"""

from __future__ import annotations

import ast
import re
from collections import Counter

from onloop.policy.review._finding import EVIDENCE, MAX_REPORTED, ReviewFinding, one_line, past_limit

# tool -> the comments that silence it (anywhere on a line: code or comment)
SUPPRESSIONS: dict[str, re.Pattern[str]] = {
    "ruff": re.compile(r"#\s*(?:noqa\b|ruff\s*:\s*(?:noqa|isort\s*:\s*skip))", re.I),
    "flake8": re.compile(r"#\s*(?:noqa\b|flake8[:\s]+noqa)", re.I),
    "pylint": re.compile(r"#\s*pylint\s*:\s*disable", re.I),
    "mypy": re.compile(r"#\s*(?:type\s*:\s*ignore|mypy\s*:\s*(?:ignore-errors|disable-error-code))", re.I),
    "pyright": re.compile(r"#\s*(?:type\s*:\s*ignore|pyright\s*:\s*(?:ignore|basic))", re.I),
    "eslint": re.compile(r"eslint-disable|eslint\s+[\w/-]+\s*:\s*(?:0|off)", re.I),
    "tsc": re.compile(r"@ts-(?:ignore|expect-error|nocheck)", re.I),
    "clippy": re.compile(r"#!?\[\s*allow\s*\("),
    "golangci-lint": re.compile(r"//\s*nolint", re.I),
}
SUPPRESSIONS["basedpyright"] = SUPPRESSIONS["pyright"]


_TYPE_CHECKERS = frozenset({"mypy", "pyright", "basedpyright"})


def suppressions_added(path: str, before: str | None, after: str, tools: frozenset[str]) -> list[ReviewFinding]:
    """Lines of `after` that silence one of `tools` more often than `before` did; for a type checker,
    also code it is shown in one form and runs in another (`if TYPE_CHECKING: ... else: ...`)."""
    found = _type_checking_forks(path, before, after) if tools & _TYPE_CHECKERS and path.endswith(".py") else []
    patterns = {tool: SUPPRESSIONS[tool] for tool in sorted(tools) if tool in SUPPRESSIONS}
    if not patterns:
        return found
    old = _suppressing_lines(before or "", patterns)
    new = _suppressing_lines(after, patterns)
    spare = Counter(key for key, _, _ in old)
    added = []
    for key, number, tool in new:
        if spare[key] > 0:
            spare[key] -= 1
        else:
            added.append((key, number, tool))
    found += [ReviewFinding("suspicious_code", path, one_line(f"line {number}: silences {tool}: {key!r}", EVIDENCE),
                            after=one_line(key)) for key, number, tool in added[:MAX_REPORTED]]
    return found + past_limit("suspicious_code", path, len(added), "lines that silence a gate's tool")


def _type_checking_forks(path: str, before: str | None, after: str) -> list[ReviewFinding]:
    """New `if TYPE_CHECKING:` blocks with an `else` (or `if not TYPE_CHECKING:`): the type checker
    reads one definition, the program runs the other."""
    old, new = _forks(before or ""), _forks(after)
    if len(new) <= len(old):
        return []
    line = new[len(old)]
    evidence = f"line {line}: `if TYPE_CHECKING:` with an `else`: the type checker sees code that does not run"
    return [ReviewFinding("suspicious_code", path, one_line(evidence, EVIDENCE))]


def _forks(text: str) -> list[int]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    forks = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        test = ast.unparse(node.test)
        negated = test.startswith("not ")
        if test.removeprefix("not ").strip("() ").split(".")[-1] == "TYPE_CHECKING" and (negated or node.orelse):
            forks.append(node.lineno)
    return sorted(forks)


def _suppressing_lines(text: str, patterns: dict[str, re.Pattern[str]]) -> list[tuple[str, int, str]]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for tool, pattern in patterns.items():
            if pattern.search(line):
                found.append((re.sub(r"\s+", " ", line.strip()), number, tool))
                break
    return found
