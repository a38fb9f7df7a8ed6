"""Each agent-CLI adapter as the backend of the real loop, with its fake CLI, through the public API.

Everything but the agent is real: the loop, git worktrees, the gates (unittest), the sandbox, SQLite.
The scenario file is committed into the workspace, because the sandbox hides the host's temporary
directories from the agent: the fake reads it from the worktree it runs in.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from tests.loop.helpers import receipts, workspace

from onloop.loop.api import start_run
from onloop.loop.stop import StopReason
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.testing.scenario import Edit, Scenario, Step

SCENARIO = ".fake-agent-scenario.json"
TEST_MUL = ("import unittest\n\nfrom calc import mul\n\n\nclass M(unittest.TestCase):\n"
            "    def test_mul(self):\n        self.assertEqual(mul(2, 3), 6)\n")
STEP = Step(
    message="Added mul() with a test.",
    edits=(Edit("calc.py", append="\n\ndef mul(a, b):\n    return a * b\n"), Edit("tests/test_mul.py", write=TEST_MUL)),
    plan_check=("mul",),
    claim_done=True,
    usage={"input_tokens": 1500, "output_tokens": 120},
    cost_usd="0.02",
)


def backend_toml(kind: str) -> str:
    argv = [sys.executable, "-m", "onloop.testing.fake_agents", kind, "--scenario", SCENARIO]
    if kind == "command":
        argv += ["--output", "jsonl"]
    options: dict[str, Any] = {"command": argv}
    if kind == "command":
        options["output"] = "jsonl"
    body = "".join(f"{key} = {json.dumps(value)}\n" for key, value in options.items())
    return f'[backends.fake]\nkind = "{kind}"\n{body}\n'


@pytest.mark.parametrize(("kind", "tokens", "cost"), [
    ("codex", (1500, 120), None),  # no dollars from Codex, no model configured to price
    ("opencode", (1500, 120), Decimal("0.02")),
    ("aider", (1500, 120), Decimal("0.02")),
    ("command", (1500, 120), Decimal("0.02")),
])
def test_adapter_completes_a_plan_item_in_the_loop(make_repo, tmp_path: Path, kind: str,  # type: ignore[no-untyped-def]
                                                   tokens: tuple[int, int], cost: Decimal | None) -> None:
    scenario = Scenario((STEP,)).to_dict()
    repo = workspace(make_repo, tmp_path, Scenario(()), items=["mul: multiply two numbers"],
                     files={SCENARIO: json.dumps(scenario)}, extra=backend_toml(kind))
    db = Database.open_default()

    outcome = start_run(repo, db=db, backend="fake")

    assert outcome.reason is StopReason.DONE, store.get_run(db, outcome.run_id).stop_detail
    receipt = receipts(db, outcome.run_id)[0]
    assert receipt["backend"] == "fake" and receipt["agent_status"] == "ok"
    assert (receipt["tokens_in"], receipt["tokens_out"]) == tokens
    warnings = [e["message"] for e in store.events_after(db, outcome.run_id) if e["kind"] == "warning"]
    if cost is None:
        assert receipt["cost_source"] == "unknown"
        assert any("cannot report cost" in w for w in warnings), "a missing capability is said, not silent"
    else:
        assert Decimal(receipt["cost_usd"]) == cost
    if kind == "aider":
        assert any("cannot report structured_events" in w for w in warnings)
    worktree = Path(store.get_run(db, outcome.run_id).worktree)
    assert "def mul" in (worktree / "calc.py").read_text()
    assert "- [x] mul: multiply two numbers" in (worktree / "IMPLEMENTATION_PLAN.md").read_text()


@pytest.mark.parametrize("kind", ["codex", "opencode"])
def test_a_usage_limit_is_waited_out_and_the_iteration_retried(make_repo, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                               kind: str) -> None:
    step = replace(STEP, rate_limit_attempts=1, rate_limit_reset_in=1.0)
    repo = workspace(make_repo, tmp_path, Scenario(()), items=["mul: multiply two numbers"],
                     files={SCENARIO: json.dumps(Scenario((step,)).to_dict())}, extra=backend_toml(kind))
    db = Database.open_default()

    outcome = start_run(repo, db=db, backend="fake")

    assert outcome.reason is StopReason.DONE, store.get_run(db, outcome.run_id).stop_detail
    receipt = receipts(db, outcome.run_id)[0]
    assert receipt["attempts"] == 2 and receipt["agent_status"] == "ok"
    assert receipt["rate_limits"][0]["action"].startswith("waited")
