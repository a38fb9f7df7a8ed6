"""The built-in agent as the loop's backend, against the fake model server over real HTTP.

The model is the only fake: the loop, the agent's structural tools (write, patch, run an action, update
the plan), the named action running `unittest` in the real sandbox, the gates and git are all real.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from onloop.loop.api import start_run
from onloop.loop.stop import StopReason
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.testing import FakeModelServer, Scenario, Turn, tool_call
from onloop.usage import Usage
from tests.loop.helpers import receipts, workspace

TEST_MUL = ("import unittest\n\nfrom calc import mul\n\n\nclass M(unittest.TestCase):\n"
            "    def test_mul(self):\n        self.assertEqual(mul(2, 3), 6)\n")


def _turns() -> list[Turn]:
    return [
        Turn(tool_calls=(tool_call("read_file", path="calc.py"),), usage=Usage(900, 40)),
        Turn(tool_calls=(tool_call("apply_patch", path="calc.py",
                                   edits=[{"search": "return a + b\n", "replace": "return a + b\n\n\n"
                                           "def mul(a, b):\n    return a * b\n"}]),
                         tool_call("write_file", path="tests/test_mul.py", content=TEST_MUL)), usage=Usage(1200, 90)),
        Turn(tool_calls=(tool_call("run_action", name="test"),), usage=Usage(1400, 20)),
        Turn(tool_calls=(tool_call("update_plan", action="check", item="mul"),), usage=Usage(1500, 20)),
        Turn(text="Added mul() with a test; the plan is complete. <onloop:done/>", usage=Usage(1600, 30)),
    ]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_builtin_agent_completes_a_plan_item_in_the_loop(make_repo, tmp_path: Path, provider: str) -> None:
    with FakeModelServer(_turns()) as server:
        base = server.openai_base_url if provider == "openai" else server.url
        backend = (f'[backends.agent]\nkind = "builtin"\nprovider = "{provider}"\nmodel = "fake-model"\n'
                   f'base_url = "{base}"\nprices = {{ input = "1.00", output = "2.00" }}\n\n'
                   '[policy.actions.test]\nargv = ["python3", "-m", "unittest", "-q"]\ntimeout = "60s"\n')
        repo = workspace(make_repo, tmp_path, Scenario(()), items=["mul: multiply two numbers"], extra=backend)
        db = Database.open_default()

        outcome = start_run(repo, db=db, backend="agent")

        assert outcome.reason is StopReason.DONE, store.get_run(db, outcome.run_id).stop_detail
        server.assert_complete()
    receipt = receipts(db, outcome.run_id)[0]
    assert receipt["backend"] == "agent" and receipt["agent_status"] == "ok"
    assert receipt["tokens_in"] == 6600 and receipt["tokens_out"] == 200
    assert receipt["cost_source"] == "price_table" and Decimal(receipt["cost_usd"]) == Decimal("0.0070")
    assert receipt["delta"]["plan_items_closed"] == ["mul: multiply two numbers"]
    action_result = [r for r in server.requests if r.wire != "models"][3].body
    assert "Ran 2 tests" in str(action_result), "the action ran unittest in the sandbox and the model saw it"
    worktree = Path(store.get_run(db, outcome.run_id).worktree)
    assert "def mul" in (worktree / "calc.py").read_text()


def test_builtin_agent_rate_limit_is_a_wait_not_a_failure(make_repo, tmp_path: Path) -> None:
    turns = [Turn.rate_limited(headers={"retry-after": "1"}), *_turns()]
    with FakeModelServer(turns) as server:
        backend = (f'[backends.agent]\nkind = "builtin"\nprovider = "openai"\nmodel = "fake-model"\n'
                   f'base_url = "{server.openai_base_url}"\n\n'
                   '[policy.actions.test]\nargv = ["python3", "-m", "unittest", "-q"]\n')
        repo = workspace(make_repo, tmp_path, Scenario(()), items=["mul: multiply two numbers"], extra=backend)
        db = Database.open_default()

        outcome = start_run(repo, db=db, backend="agent")

    assert outcome.reason is StopReason.DONE
    receipt = receipts(db, outcome.run_id)[0]
    assert receipt["attempts"] == 2 and receipt["rate_limits"][0]["action"].startswith("waited")
    assert store.get_run(db, outcome.run_id).agent_error_streak == 0
