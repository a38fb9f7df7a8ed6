"""Run the red-team suite and print, per category: variants, blocked, caught after the fact, missed.

    python -m tests.redteam.summary            # the table, then every miss with its reason
    python -m tests.redteam.summary --json     # the same as JSON
    python -m tests.redteam.summary -k network # extra arguments go to pytest

"blocked" means the sandbox prevented the effect; "caught" means the effect happened inside the
worktree and the audit or the verifier recorded an incident and refused it; "missed" is a known hole
(a strict xfail whose reason starts with HOLE or LIMIT). A test that fails, or a strict xfail that
passes (a hole was fixed: remove its mark), is listed as "failing" and makes the exit code non-zero.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


@dataclass
class Variant:
    nodeid: str
    category: str = "?"
    result: str = "failing"
    reason: str = ""


@dataclass
class Collector:
    variants: dict[str, Variant] = field(default_factory=dict)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        variant = self.variants.setdefault(report.nodeid, Variant(report.nodeid))
        props = dict(report.user_properties)
        variant.category = str(props.get("redteam_category", variant.category))
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            variant.result, variant.reason = _classify(report, props)


def _classify(report: pytest.TestReport, props: dict[str, Any]) -> tuple[str, str]:
    if hasattr(report, "wasxfail"):
        if report.outcome == "skipped":
            return "missed", str(report.wasxfail)
        return "failing", f"XPASS: a known hole no longer reproduces ({report.wasxfail[:80]})"
    if report.outcome == "passed":
        return str(props.get("redteam_how", "failing")), ""
    if report.outcome == "skipped":
        return "skipped", str(report.longrepr)[-200:]
    return "failing", str(report.longrepr).splitlines()[-1][:200] if report.longrepr else "failed"


def table(variants: list[Variant]) -> str:
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for v in variants:
        rows[v.category]["variants"] += 1
        rows[v.category][v.result] += 1
    columns: tuple[str, ...] = ("variants", "blocked", "caught", "missed", "failing")
    if any(v.result == "skipped" for v in variants):
        columns += ("skipped",)
    width = max(len(c) for c in [*rows, "category", "total"])
    lines = [f"{'category':<{width}}  " + "  ".join(f"{c:>8}" for c in columns)]
    lines.append("-" * len(lines[0]))
    for category in sorted(rows):
        lines.append(f"{category:<{width}}  " + "  ".join(f"{rows[category][c]:>8}" for c in columns))
    lines.append("-" * len(lines[0]))
    totals = {c: sum(r[c] for r in rows.values()) for c in columns}
    lines.append(f"{'total':<{width}}  " + "  ".join(f"{totals[c]:>8}" for c in columns))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    extra = [a for a in argv if a != "--json"]
    collector = Collector()
    code = pytest.main([str(HERE), "-q", "-p", "no:cacheprovider", "--no-header", "-rN", *extra],
                       plugins=[collector])
    variants = sorted(collector.variants.values(), key=lambda v: (v.category, v.nodeid))
    if as_json:
        print(json.dumps([v.__dict__ for v in variants], indent=1))
    else:
        print("\nRed-team summary\n")
        print(table(variants))
        for label in ("missed", "failing"):
            chosen = [v for v in variants if v.result == label]
            if chosen:
                print(f"\n{label}:")
                for v in chosen:
                    print(f"  - {v.nodeid.split('::', 1)[1]}: {v.reason[:160]}")
    failing = any(v.result == "failing" for v in variants)
    return 1 if failing or code not in (0, 1) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
