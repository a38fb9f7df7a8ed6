"""`onloop demo`: a real multi-iteration loop on a bundled example repository, offline.

The example (`examples/demo/repo`, a small Python project with a four-item plan and a unittest suite)
is copied to a temporary directory and made a git repository; the scripted agent plays the model
(`examples/demo/scenario.toml`). Everything else is the real thing: worktree and branch, the sandbox,
the baseline, the gates, checkpoints, receipts and the done authority. In five iterations one gate
fails and is fixed in the next, one completion claim is refused as premature (a `false_done`
incident), and the run ends in a verified done.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from rich.console import Console

from onloop.cli.commands import print_outcome
from onloop.cli.progress import TerminalReporter
from onloop.loop.api import start_run
from onloop.loop.events import QuietReporter
from onloop.store.db import Database


def example_dir() -> Path:
    return Path(str(resources.files("onloop") / "examples" / "demo"))


def prepare(target: Path) -> Path:
    """Copy the example to `target` and commit it; returns the repository path."""
    source = example_dir()
    target.mkdir(parents=True, exist_ok=True)
    repo = target / "repo"
    shutil.copytree(source / "repo", repo)
    shutil.copyfile(source / "scenario.toml", target / "scenario.toml")
    env_args = ["-c", "user.name=onloop demo", "-c", "user.email=demo@onloop.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], [*env_args, "commit", "-q", "-m", "textstats: start"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


def run_demo(keep: Path | None = None, *, quiet: bool = False) -> int:
    console = Console(highlight=False)
    target = keep.resolve() if keep else Path(tempfile.mkdtemp(prefix="onloop-demo-"))
    repo = prepare(target)
    console.print(f"onloop demo: example repository at {repo}", style="bold", markup=False)
    db = Database.open_default()
    outcome = start_run(repo, db=db, reporter=QuietReporter() if quiet else TerminalReporter())
    print_outcome(outcome, db)
    console.print("\nWhere to look next:", style="bold")
    for line in (f"onloop show {outcome.run_id}              receipts of every iteration",
                 f"onloop show {outcome.run_id} -i 2         one receipt: gates, diff stat, transcript",
                 f"onloop log {outcome.run_id}               the event stream",
                 f"git -C {repo} log --oneline onloop/{outcome.run_id}   the checkpoints"):
        console.print("  " + line, markup=False)
    return outcome.exit_code
