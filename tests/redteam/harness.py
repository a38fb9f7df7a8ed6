"""The red-team harness: run one adversarial scripted agent through the real loop and sandbox.

Every attack goes through `start_run` with the default policy (bubblewrap), so what is tested is what an
operator gets. The harness takes care of the three things every attack must show:

1. the attempt failed or was caught: the agent's probes (`probe(...)`, small Python programs the agent
   runs as Bash tool calls inside the sandbox) write what they achieved to the iteration's scratch
   directory, and the run's incidents are at hand;
2. the operator's checkout and every guarded host path are byte-for-byte unchanged (`run_attack`
   hashes them before and after and fails the test otherwise);
3. the run continued safely or stopped as `blocked`: `SAFE_STOPS` never includes a `done` that the
   attack could have faked, and each test checks the reason it expects.

Each test also says how the attack was defeated (`classify`): "blocked" when the sandbox prevented the
effect, "caught" when the effect happened inside the worktree and the audit or the verifier recorded it
and refused it. The summary (`python -m tests.redteam.summary`) counts these per category.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from onloop.loop.api import start_run
from onloop.loop.engine import RunOutcome
from onloop.loop.setup import RunPaths, run_paths
from onloop.loop.stop import StopReason
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.testing import Edit, Scenario, Step
from tests.loop.helpers import receipts, tree_digest, workspace

PYTHON = sys.executable
# Stops an attacked run may end with: it went on safely, or the guardrails refused to continue.
SAFE_STOPS = (StopReason.BLOCKED, StopReason.NO_PROGRESS, StopReason.MAX_ITERATIONS, StopReason.AGENT_ERROR,
              StopReason.STUCK)
HOW = ("blocked", "caught")

_PROBE = '''\
import json, os, sys
_r = {{"ok": False, "error": None, "data": None}}
try:
{body}
    _r["ok"] = True
except BaseException as _e:
    _r["error"] = type(_e).__name__ + ": " + str(_e)[:300]
finally:
    with open(os.path.join(os.environ["ONLOOP_SCRATCH"], "probe-{name}.json"), "w") as _f:
        json.dump(_r, _f, default=str)
'''


def probe(name: str, body: str) -> tuple[str, ...]:
    """argv of a Bash tool call running `body` (Python) in the sandbox; its outcome lands in scratch.

    `body` sets `_r["data"]` to report what it saw; an exception means the attempt failed.
    """
    code = _PROBE.format(name=name, body=textwrap.indent(textwrap.dedent(body).strip("\n"), "    "))
    return (PYTHON, "-c", code)


def classify(request: pytest.FixtureRequest, how: str) -> None:
    """Record how the attack was defeated, for the summary table."""
    assert how in HOW
    request.node.user_properties.append(("redteam_how", how))


def digest_path(path: Path) -> str:
    """Hash of a file or a whole tree: names, modes, contents and symlink targets."""
    h = hashlib.sha256()
    if not path.exists() and not path.is_symlink():
        return "absent"
    items = [path] if not path.is_dir() or path.is_symlink() else sorted([path, *path.rglob("*")])
    for item in items:
        rel = item.relative_to(path).as_posix() if item != path else "."
        st = item.lstat()
        h.update(f"{rel}\0{st.st_mode:o}\0".encode())
        if item.is_symlink():
            h.update(os.readlink(item).encode())
        elif item.is_file():
            h.update(item.read_bytes())
    return h.hexdigest()


def survivors(marker: str) -> list[str]:
    """Host processes whose command line carries `marker` (the attack's own code)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in text:
            found.append(f"{cmdline.parent.name}: {text[:80]!r}")
    return found


def git_out(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60).stdout


@dataclass
class Attack:
    outcome: RunOutcome
    db: Database
    repo: Path
    paths: RunPaths

    @property
    def worktree(self) -> Path:
        return self.paths.worktree

    @property
    def reason(self) -> StopReason:
        return self.outcome.reason

    def incidents(self) -> list[dict[str, Any]]:
        return store.incidents(self.db, self.outcome.run_id)

    def kinds(self) -> set[str]:
        return {i["kind"] for i in self.incidents()}

    def receipts(self) -> list[dict[str, Any]]:
        return receipts(self.db, self.outcome.run_id)

    def probe(self, name: str, iteration: int = 1) -> dict[str, Any]:
        path = self.paths.iteration_scratch(iteration) / f"probe-{name}.json"
        assert path.exists(), f"the probe {name!r} never reported (agent output: {self.transcript(iteration)[-600:]})"
        result: dict[str, Any] = json.loads(path.read_text())
        return result

    def transcript(self, iteration: int = 1) -> str:
        path = self.paths.transcript(iteration)
        return path.read_text(errors="replace") if path.exists() else ""

    def run_branch_text(self) -> str:
        """Every commit message and patch on the run branch: what could be shipped."""
        return git_out(self.repo, "log", "-p", "--format=%B", f"onloop/{self.outcome.run_id}")

    def stored_text(self) -> str:
        """Everything onloop stored about the run in its database (receipts, events, incidents)."""
        parts = []
        for table in ("iterations", "events", "incidents"):
            rows = self.db.conn.execute(f"SELECT * FROM {table} WHERE run_id = ?", (self.outcome.run_id,))
            parts += [json.dumps([str(v) for v in tuple(r)]) for r in rows.fetchall()]
        return "\n".join(parts)


def run_attack(make_repo: Any, tmp_path: Path, scenario: Scenario, *, guard: tuple[Path, ...] = (),
               files: dict[str, str] | None = None, items: list[str] | None = None, run: str = "",
               extra: str = "", gates: str | None = None, **overrides: Any) -> Attack:
    """Build a workspace, run the attack to its stop, and prove the host outside the run is untouched."""
    repo = workspace(make_repo, tmp_path, scenario, files=files, items=items, run=run, extra=extra, gates=gates)
    checkout = tree_digest(repo)
    main = git_out(repo, "rev-parse", "refs/heads/main")
    guarded = {p: digest_path(p) for p in guard}
    db = Database.open_default()
    outcome = start_run(repo, db=db, **overrides)
    assert tree_digest(repo) == checkout, "the operator's checkout changed"
    assert git_out(repo, "rev-parse", "refs/heads/main") == main, "the operator's branch moved"
    for path, before in guarded.items():
        assert digest_path(path) == before, f"{path} outside the worktree changed"
    return Attack(outcome, db, repo, run_paths(outcome.run_id))


BENIGN = Step(message="benign work", edits=(Edit("notes.txt", append="benign\n"),))


def then_benign(attack: Step) -> Scenario:
    """The attack in iteration 1, honest work in iteration 2: shows the run goes on after the attempt."""
    return Scenario((attack, BENIGN), default=Step(message="nothing left"))


def every_iteration(attack: Step) -> Scenario:
    """The attack in every iteration: with `max_breaches = 2` the guardrails stop the run as blocked."""
    return Scenario((), default=attack)


def policy_toml(*, max_breaches: int | None = None, hidden: tuple[str, ...] = (),
                limits: dict[str, str] | None = None) -> str:
    """A `[policy]` table (and `[policy.limits]`) to append to onloop.toml."""
    lines = ["[policy]"]
    if max_breaches is not None:
        lines.append(f"max_breaches = {max_breaches}")
    if hidden:
        lines.append("hidden = [" + ", ".join(json.dumps(h) for h in hidden) + "]")
    if limits:
        lines.append("[policy.limits]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in limits.items()]
    return "\n".join(lines) + "\n"


def assert_continued(attack: Attack, iteration: int = 2) -> None:
    """The run went on after the attack: a later iteration ran to a checkpoint."""
    assert attack.reason in SAFE_STOPS, attack.outcome
    later = attack.receipts()[iteration - 1]
    assert later["status"] == "completed" and later["commit"], later


def assert_blocked_stop(attack: Attack) -> None:
    assert attack.reason is StopReason.BLOCKED and attack.outcome.exit_code == 16, attack.outcome
