"""A run whose programs the sandbox cannot see is refused before it exists, through the real CLI
(`python -m onloop.cli`), and `onloop policy check` reports the very same problems."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from onloop.store import runs as store
from onloop.store.db import Database
from onloop.testing import Scenario
from tests.loop.helpers import onloop_cli, workspace

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
TMPFS = "which the sandbox replaces with an empty tmpfs"


def _tool(tmp_path: Path, name: str) -> Path:
    tool = tmp_path / "operator-tools" / name
    tool.parent.mkdir(parents=True, exist_ok=True)
    tool.write_text("#!/bin/sh\nexec python3 -m unittest\n")
    tool.chmod(0o755)
    return tool


def test_a_gate_under_tmp_refuses_the_run_and_policy_check_says_why(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tool = _tool(tmp_path, "run-tests")
    repo = workspace(make_repo, tmp_path, Scenario(()), gates=f'[gates.tests]\ncommand = ["{tool}"]\ntimeout = "60s"\n')

    done = onloop_cli("run", "-C", str(repo), "--quiet")

    assert done.returncode == 2, done.stderr
    assert "gates.tests.command: gate 'tests' cannot start" in done.stderr
    assert f"{tool} is under /tmp, {TMPFS}" in done.stderr
    fix = f'readable = ["{tool.parent}"] under [policy] in onloop.toml, or install it under /usr/local or /opt'
    assert fix in done.stderr
    assert store.list_runs(Database.open_default(), 10) == [], "refused before the run was created"

    check = onloop_cli("policy", "check", "--config", str(repo / "onloop.toml"))
    assert check.returncode == 2, check.stdout + check.stderr
    assert f"FAIL  gates.tests.command: gate 'tests' cannot start `{tool}`" in check.stdout
    assert f"{tool} is under /tmp, {TMPFS}" in check.stdout and fix in check.stdout


def test_an_agent_script_under_tmp_is_named_as_the_backend(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    agent = _tool(tmp_path, "agent.sh")
    extra = f'[backends.mine]\nkind = "command"\ncommand = ["{agent}"]\n'
    repo = workspace(make_repo, tmp_path, Scenario(()), extra=extra)

    done = onloop_cli("run", "-C", str(repo), "--quiet", "--backend", "mine")

    assert done.returncode == 2, done.stderr
    assert f"backends.mine.command: backend 'mine' cannot start `{agent}`" in done.stderr
    assert f"is under /tmp, {TMPFS}" in done.stderr


def test_the_fix_line_makes_the_run_start_and_policy_check_pass(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tool = _tool(tmp_path, "run-tests")
    gates = f'[gates.tests]\ncommand = ["{tool}"]\ntimeout = "60s"\nformat = "exit"\n'
    repo = workspace(make_repo, tmp_path, Scenario(()), gates=gates, extra=f'[policy]\nreadable = ["{tool.parent}"]\n')

    check = onloop_cli("policy", "check", "--config", str(repo / "onloop.toml"))
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"OK    gates.tests.command: `{tool}` runs {tool} -> /usr/bin/" in check.stdout
    assert "OK    backends.scripted" in check.stdout

    done = onloop_cli("run", "-C", str(repo), "--quiet", "--max-iterations", "1")
    assert done.returncode != 2, done.stderr
    assert "cannot start" not in done.stderr
