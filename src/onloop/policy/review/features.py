"""What `suspicious_code` counts: features, their categories, and the strings that are features.

A feature is one occurrence of a mechanism (a category, such as "inspects the test runner") with a
detail that names its spelling once resolved (`sys.modules`, `string 'pytest'`). Features are counted
per (category, detail) in the base and in the new text, so that only new occurrences are reported;
the span lets the Python scanner drop a feature nested in another of the same category.

Both extractors, the Python scanner (`scanner.py`) and the line fallback (`suspicious.py`), produce
these features and classify string constants with the same `string_features`, so that a string is a
feature whichever way its file is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

RUNNER = "inspects the test runner"
IMPORT = "imports a test framework or a computed module name"
PATCH = "patches the interpreter or a module"
EXIT = "controls how the process ends"
DYNAMIC = "runs dynamic code"
RAWFD = "writes to raw file descriptors"
REPORT = "names test reports or test files"
# Ordinary in a program, not in a test file, where it reaches every other test of the session.
STATE = "changes process-wide state (environment, working directory, import path, reloaded modules)"


@dataclass(frozen=True, slots=True)
class Feature:
    """One occurrence of a mechanism: counted by `key`, reported by `line` and `excerpt`."""

    category: str
    detail: str
    line: int
    span: tuple[int, int, int, int]  # (line, column, end line, end column): to drop nested duplicates
    excerpt: str

    @property
    def key(self) -> tuple[str, str]:
        return self.category, self.detail


# Strings that name a test framework or its environment. Ambiguous words count only as the whole string.
RUNNER_TEXT = re.compile(
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


def string_features(text: str) -> Iterator[tuple[str, str]]:
    """The (category, detail) a string constant is a feature of: a report name, a runner name, or none."""
    shown = text if len(text) <= 48 else text[:47] + "…"
    # A report name often holds a runner's name too (".pytest_cache"): it is reported once, as a report.
    if _REPORT_TEXT.search(text):
        yield REPORT, f"string {shown!r}"
    elif RUNNER_TEXT.search(text):
        yield RUNNER, f"string {shown!r}"
