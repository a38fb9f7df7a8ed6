"""The README's two commands, and the demo the first one ends in.

`.ci/run` runs the README's first command (without the demo) and then its second, on a clean clone; this
file checks that the README, `.ci/run` and the scripts agree, and runs `onloop demo` for real.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from onloop.store import runs as store
from onloop.store.db import Database
from tests.conftest import REPO_ROOT
from tests.loop.helpers import onloop_cli


def test_readme_two_commands_are_what_ci_runs() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"## Two commands\n\n```sh\n(.*?)```", readme, re.DOTALL)
    assert block, "the README starts with its two commands"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["./setup.sh", "./test.sh"]
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "bash setup.sh --no-demo" in ci and "bash test.sh" in ci
    setup = (REPO_ROOT / "setup.sh").read_text()
    assert "exec .venv/bin/onloop demo" in setup and "bubblewrap" in setup


def test_demo_runs_a_verified_loop(tmp_path: Path) -> None:
    done = onloop_cli("demo", "--keep", str(tmp_path / "demo"), timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "stopped: done (exit 0)" in done.stdout and "Where to look next" in done.stdout
    db = Database.open_default()
    run = store.list_runs(db)[0]
    assert run.stop_reason == "done" and run.iterations_done == 5
    gates = [json.loads(it["gates_json"] or "{}").get("tests", {}) for it in store.get_iterations(db, run.id)]
    assert gates[1]["status"] == "fail" and gates[2]["fixed"], "one iteration fails a gate, the next fixes it"
    assert [i["kind"] for i in store.incidents(db, run.id)] == ["false_done"], "one premature claim is refused"
    assert (tmp_path / "demo" / "repo" / "textstats.py").read_text().count("def ") == 2, "checkout untouched"
