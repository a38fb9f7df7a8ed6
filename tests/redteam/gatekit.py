"""Shared pieces of the red-team suites against "unforgeable done": pytest gates, breaking edits, checks.

The suites that attack the sealed gates (test_harness_tampering, test_through_the_gate, test_host_side,
test_targets, test_review) need the same few things: a pytest gate run by onloop's own plugin, a suite
written for pytest, the edit that breaks `add`, a claim of completion with the whole plan ticked (so any
trick that slips through becomes a "verified" done), and the assertions every attack must pass: the run
did not end done, the stored run agrees with the outcome, the gate logs say what the code saw.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from onloop.loop.stop import StopReason
from onloop.store import runs as store
from onloop.testing import Edit, Step
from tests.redteam.harness import Attack

PYTHON = sys.executable


def pytest_gate(*extra: str, name: str = "tests", target: str = "tests", more: str = "") -> str:
    """A `[gates.NAME]` table running pytest (so onloop's report plugin is used) on `target`."""
    argv = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, target]
    return f'[gates.{name}]\ncommand = {json.dumps(argv)}\ntimeout = "120s"\n{more}'


PYTEST_GATE = pytest_gate()
# `-s`: what the code under test prints while the gate runs lands in the gate's log (the evidence).
# pytest-rerunfailures (a dev dependency) is left out: under pytest-xdist its status server's socket and
# threads make a process's fd table differ between two identical runs on a loaded machine, noise the
# attacks that compare what the first run and the re-run saw would read as onloop's.
PYTEST_GATE_S = pytest_gate("-s", "-p", "no:rerunfailures")

PYTEST_TESTS = ("from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
                "def test_add_negative():\n    assert add(-1, -1) == -2\n")
PYTEST_FILES = {"tests/test_calc.py": PYTEST_TESTS}
BREAK = Edit("calc.py", replace=("return a + b", "return a - b"))


def claim(*edits: Edit, commands: tuple[tuple[str, ...], ...] = (), message: str = "All tests pass now.") -> Step:
    """A completion claim with the whole (two-item) plan ticked: a trick that slips through is a done."""
    return Step(message=message, claim_done=True, plan_check=("first", "second"), edits=edits, commands=commands)


def stored_agrees(a: Attack) -> None:
    """The run's stored stop and exit code are the outcome's."""
    row = store.get_run(a.db, a.outcome.run_id)
    assert row.exit_code == a.outcome.exit_code, (row.exit_code, a.outcome)
    assert row.stop_reason == a.reason.value, (row.stop_reason, a.outcome)


def assert_not_done(a: Attack) -> None:
    """The run never ended done (exit 0), and what is stored says the same."""
    assert a.reason is not StopReason.DONE and a.outcome.exit_code != 0, f"verified done on bad work: {a.outcome}"
    stored_agrees(a)


def assert_done(a: Attack) -> None:
    assert a.reason is StopReason.DONE and a.outcome.exit_code == 0, a.outcome
    stored_agrees(a)


def gate(a: Attack, iteration: int, name: str = "tests") -> dict[str, Any]:
    """The verdict of gate `name` in the receipt of `iteration` ({} when the gates did not run)."""
    receipts = a.receipts()
    if len(receipts) < iteration:
        return {}
    gates: dict[str, Any] = receipts[iteration - 1].get("gates") or {}
    return dict(gates.get(name) or {})


def gate_log(a: Attack, label: str, name: str = "tests") -> str:
    """The output of one gate run (`label`: baseline, i001, i001-rerun, base-rerun-1, ...)."""
    path = a.paths.logs / f"gate-{name}-{label}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def incidents_of(a: Attack, kind: str) -> list[dict[str, Any]]:
    return [i for i in a.incidents() if i["kind"] == kind]


def evidence(incident: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(incident.get("evidence_json") or "{}")
    return data


def files_under(root: Path, needle: str) -> list[str]:
    """Paths under `root` whose name contains `needle` (what a payload may have planted there)."""
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if needle in p.name)
