"""Building workspaces for loop tests: a real git repo, a unittest suite, a plan, a scenario."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from onloop.store.db import Database
from onloop.testing import Scenario

CALC = "def add(a, b):\n    return a + b\n"
CALC_TEST = (
    "import unittest\n\nfrom calc import add\n\n\n"
    "class AddTest(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n"
)
GITIGNORE = "__pycache__/\n*.pyc\n"


def plan_text(items: list[str], done: tuple[str, ...] = ()) -> str:
    return "# Plan\n\n" + "".join(f"- [{'x' if i in done else ' '}] {i}\n" for i in items)


def write_config(repo: Path, scenario_path: Path, extra: str = "", run: str = "", gates: str | None = None) -> None:
    gate = gates if gates is not None else (
        '[gates.tests]\ncommand = ["python3", "-m", "unittest", "-v"]\ntimeout = "60s"\nformat = "unittest"\n'
    )
    text = (f'[run]\nbackend = "scripted"\nmax_iterations = 8\nmax_time = "5m"\nbudget_usd = "10"\n{run}\n'
            f'[backends.scripted]\nkind = "scripted"\nscenario = "{scenario_path}"\n\n{gate}\n{extra}\n')
    (repo / "onloop.toml").write_text(text)


def workspace(make_repo: Any, tmp_path: Path, scenario: Scenario, *, items: list[str] | None = None,
              files: dict[str, str] | None = None, run: str = "", extra: str = "", gates: str | None = None) -> Path:
    scenario_path = scenario.write(tmp_path / "scenario.json")
    base: dict[str, str] = {"calc.py": CALC, "tests/__init__.py": "", "tests/test_calc.py": CALC_TEST,
                            ".gitignore": GITIGNORE,
                            "IMPLEMENTATION_PLAN.md": plan_text(items if items is not None else ["first", "second"])}
    base.update(files or {})
    repo: Path = make_repo(base)
    write_config(repo, scenario_path, extra=extra, run=run, gates=gates)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "onloop config"], cwd=repo, check=True)
    return repo


def tree_digest(root: Path) -> str:
    """A hash of every file under root (including .git), to prove the operator's checkout is untouched."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            rel = path.relative_to(root).as_posix()
            if rel.startswith(".git/") and not rel.startswith((".git/refs/heads/main", ".git/HEAD", ".git/index")):
                continue  # onloop adds its own run branch, worktree metadata and tags: expected
            digest.update(rel.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def onloop_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
               timeout: float = 240) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "onloop.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def receipts(db: Database, run_id: str) -> list[dict[str, Any]]:
    rows = db.conn.execute("SELECT receipt_json FROM iterations WHERE run_id = ? ORDER BY n", (run_id,)).fetchall()
    return [json.loads(r[0]) if r[0] else {} for r in rows]
