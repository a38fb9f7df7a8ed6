"""Friction an operator meets at the command line, through the real entry point (`python -m onloop.cli`).

Uncommitted run inputs are refused or committed to the run's branch only; a run whose process was
killed says so in `status` and `runs`; a stopped run refuses steering; resuming a run that ended is
a no-op that repeats its outcome; `--version` exists, help texts lose no words, run ids never wrap;
and `--help` and `--version` load neither the engine nor the config nor pydantic.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest
import typer

from onloop.cli.main import LAZY_COMMANDS, LazyGroup, app
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.testing import Edit, Scenario, Step
from tests.conftest import git
from tests.loop.helpers import onloop_cli, plan_text, tree_digest, workspace
from tests.loop.test_run_e2e import feature, idle


def _wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def _events(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _finished_run(make_repo, tmp_path: Path, scenario: Scenario, run: str = "") -> str:  # type: ignore[no-untyped-def]
    repo = workspace(make_repo, tmp_path, scenario, run=run)
    done = onloop_cli("run", "-C", str(repo), "--json")
    assert done.returncode in (0, 13), done.stderr
    return str(_events(done.stdout)[-1]["run_id"])


# -- 1. uncommitted specs, plan and prompts -------------------------------------------------------------


def test_uncommitted_run_inputs_are_refused_or_committed_to_the_run_branch_only(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scenario = Scenario((feature("one", "first"), feature("two", "second", claim=True)))
    repo = workspace(make_repo, tmp_path, scenario, items=[])  # the committed plan has no open item
    (repo / "IMPLEMENTATION_PLAN.md").write_text(plan_text(["first", "second"]))
    (repo / "specs").mkdir()
    (repo / "specs" / "calc.md").write_text("# calc\n\none() and two() return 1.\n")
    (repo / "scratch.txt").write_text("not an input of the run\n")
    head = git(repo, "rev-parse", "main").strip()
    before = (tree_digest(repo), (repo / ".git" / "index").read_bytes(), git(repo, "status", "--porcelain"))

    refused = onloop_cli("run", "-C", str(repo), "--quiet")

    assert refused.returncode == 2, refused.stderr
    assert "IMPLEMENTATION_PLAN.md (modified)" in refused.stderr and "specs/calc.md (untracked)" in refused.stderr
    assert "--include-uncommitted" in refused.stderr and "scratch.txt" not in refused.stderr
    assert store.list_runs(Database.open_default()) == [], "refused before a run exists"

    done = onloop_cli("run", "-C", str(repo), "--json", "--include-uncommitted")

    assert done.returncode == 0, done.stderr + done.stdout
    events = _events(done.stdout)
    included = next(e for e in events if e["kind"] == "uncommitted_included")
    assert included["files"] == ["IMPLEMENTATION_PLAN.md", "specs/calc.md"]
    row = store.get_run(Database.open_default(), str(events[-1]["run_id"]))
    assert events[-1]["reason"] == "done" and included["base_commit"] == row.base_commit
    assert git(repo, "rev-parse", f"{row.base_commit}^").strip() == head, "one commit on top of the user's HEAD"
    assert git(repo, "show", "--name-only", "--format=", row.base_commit).split() == [
        "IMPLEMENTATION_PLAN.md", "specs/calc.md"], "exactly the run's inputs, nothing else"
    assert git(repo, "show", f"{row.base_commit}:IMPLEMENTATION_PLAN.md") == plan_text(["first", "second"])
    assert git(repo, "merge-base", "--is-ancestor", row.base_commit, row.branch) == ""
    baseline = next(e for e in events if e["kind"] == "baseline_started")
    assert row.base_commit[:10] in str(baseline["message"]), "the baseline is taken on the included commit"
    assert git(repo, "rev-parse", "main").strip() == head, "the user's branch does not move"
    after = (tree_digest(repo), (repo / ".git" / "index").read_bytes(), git(repo, "status", "--porcelain"))
    assert after == before, "the user's index and working tree stay byte-identical"


# -- 2. a killed run's status ---------------------------------------------------------------------------


def test_status_says_the_process_of_a_killed_run_is_gone(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    slow = Step(message="slow", delay=60, edits=(Edit("calc.py", append="\nX = 1\n"),))
    repo = workspace(make_repo, tmp_path, Scenario((slow, feature("one", "first"))))
    proc = subprocess.Popen([sys.executable, "-m", "onloop.cli", "run", "-C", str(repo), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    db = Database.open_default()
    _wait_for(lambda: bool(store.list_runs(db)) and bool(store.running_iterations(db, store.list_runs(db)[0].id)))
    run_id = store.list_runs(db)[0].id
    live = onloop_cli("status")
    assert f"running  {run_id}" in live.stdout, live.stdout

    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)

    assert store.get_run(db, run_id).status == "running", "a kill -9 leaves the row saying running"
    status = onloop_cli("status")
    assert status.returncode == 0, status.stderr
    assert f"interrupted (process gone) {run_id}" in status.stdout, status.stdout
    assert f"resume with: onloop run --resume {run_id}" in status.stdout
    assert "no run is going on now" in status.stdout
    runs = onloop_cli("runs")
    assert f"run {run_id}: interrupted (process gone); resume with: onloop run --resume {run_id}" in runs.stdout
    steered = onloop_cli("steer", run_id, "say", "use integers")
    assert steered.returncode == 0 and f"read when the run is resumed: onloop run --resume {run_id}" in steered.stdout


def test_a_reused_pid_is_not_taken_for_the_runs_process(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_id = _finished_run(make_repo, tmp_path, Scenario((feature("one", "first"), feature("two", "second",
                                                                                             claim=True))))
    db = Database.open_default()
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        def claim(updated_at: str) -> str:
            with db.transaction() as tx:
                tx.execute("UPDATE runs SET status = 'running', pid = ?, updated_at = ? WHERE id = ?",
                           (stranger.pid, updated_at, run_id))
            return onloop_cli("status").stdout

        # The pid is alive but its process started long after the run last wrote its row: not the run's.
        assert f"interrupted (process gone) {run_id}" in claim("2001-01-01 00:00:00")
        # Written after the process started: as far as anyone can tell, it is the run's process.
        assert f"running  {run_id}" in claim(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 5)))
    finally:
        stranger.kill()
        stranger.wait()


# -- 3. steering a stopped run --------------------------------------------------------------------------


@pytest.mark.parametrize("command", [("stop",), ("say", "hello"), ("pause",), ("resume",)])
def test_steering_a_stopped_run_is_refused(make_repo, tmp_path: Path, command: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    run_id = _finished_run(make_repo, tmp_path, Scenario((feature("one", "first"), feature("two", "second",
                                                                                             claim=True))))

    refused = onloop_cli("steer", run_id, *command)

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"run {run_id} is stopped (done, exit 0)" in refused.stderr and "queued" not in refused.stdout
    assert Database.open_default().conn.execute("SELECT count(*) FROM steering").fetchone()[0] == 0


# -- 4. --version, help texts, ids that can be copied, lazy sub-apps ------------------------------------


def test_version_and_run_help() -> None:
    shown = onloop_cli("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"onloop {version('onloop')}"
    helped = onloop_cli("run", "--help", env={"COLUMNS": "200"})
    assert "a TOML file whose policy table overrides onloop.toml's for this run" in helped.stdout
    assert "--include-uncommitted" in helped.stdout


def test_no_help_text_holds_square_brackets() -> None:
    """typer renders help as rich markup, which drops `[word]` (the word with it)."""
    group = typer.main.get_command(app)
    assert isinstance(group, LazyGroup)
    for module in {module for module, _ in LAZY_COMMANDS.values()}:
        group.load(module)

    def texts(command: typer.core.TyperCommand | typer.core.TyperGroup, path: str) -> list[tuple[str, str]]:
        found = [(path, command.help or "")]
        found += [(f"{path} {param.name}", getattr(param, "help", None) or "") for param in command.params]
        for name, sub in getattr(command, "commands", {}).items():
            found += texts(sub, f"{path} {name}")
        return found

    assert [(where, text) for where, text in texts(group, "onloop") if "[" in text] == []


def test_the_help_lines_of_unloaded_sub_apps_match_their_own() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, LazyGroup)
    for name, (module, line) in LAZY_COMMANDS.items():
        group.load(module)
        assert (group.commands[name].help or "").strip().split("\n\n")[0] == line, name


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_load_no_engine_config_or_pydantic(flag: str) -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "onloop.cli", flag], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
    heavy = {name for name in loaded if name.split(".")[0] == "pydantic"
             or name.startswith(("onloop.config", "onloop.loop", "onloop.policy", "onloop.memory", "onloop.backends"))}
    assert heavy == set()


def _in_terminal(columns: int, *args: str) -> str:
    """The CLI's output on a terminal `columns` wide (a pty), without escape sequences."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    proc = subprocess.Popen([sys.executable, "-m", "onloop.cli", *args], stdin=slave, stdout=slave, stderr=slave,
                            env={**env, "NO_COLOR": "1", "TERM": "xterm"})
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(master)
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.decode())


def test_run_ids_never_wrap_in_the_runs_table(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_id = _finished_run(make_repo, tmp_path, Scenario((feature("one", "first"), feature("two", "second",
                                                                                             claim=True))))

    table = _in_terminal(80, "runs")

    cells = [line.split("│")[1].strip() for line in table.splitlines() if line.count("│") > 2]
    assert cells[0] == run_id, table


# -- 5. resuming a run that ended -----------------------------------------------------------------------


@pytest.mark.parametrize(("run", "scenario", "reason", "code"), [
    ("", Scenario((feature("one", "first"), feature("two", "second", claim=True))), "done", 0),
    ("no_progress_limit = 1", Scenario((), default=idle()), "no_progress", 13),
])
def test_resuming_a_run_that_ended_repeats_its_outcome(make_repo, tmp_path: Path, run: str, scenario: Scenario,  # type: ignore[no-untyped-def]
                                                       reason: str, code: int) -> None:
    run_id = _finished_run(make_repo, tmp_path, scenario, run=run)
    db = Database.open_default()
    iterations = len(store.get_iterations(db, run_id))
    events = len(store.events_after(db, run_id))

    again = onloop_cli("run", "--resume", run_id, "--quiet")
    as_json = onloop_cli("run", "--resume", run_id, "--json")

    assert again.returncode == code, again.stderr
    assert f"run {run_id} stopped: {reason} (exit {code})" in again.stdout
    assert as_json.returncode == code
    last = _events(as_json.stdout)[-1]
    assert (last["kind"], last["reason"], last["exit_code"], last["already_stopped"]) == ("run_stopped", reason,
                                                                                         code, True)
    assert len(store.get_iterations(db, run_id)) == iterations, "nothing ran again"
    assert len(store.events_after(db, run_id)) == events, "nothing was recorded again"
    assert store.get_run(db, run_id).status == "stopped"
