"""The baseline: every gate run once on the untouched base commit, before the first iteration.

Stored per run (so `--resume` never re-takes it against a changed tree) with every check's status, so
pre-existing failures are known per check: they neither block "done" nor count as progress.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onloop.config import Config
from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.runner import GateRun, run_differential_gate, run_gate, run_judge_gate
from onloop.loop.events import EventLog
from onloop.loop.setup import RunPaths
from onloop.policy.sandbox import limits_from_policy
from onloop.process import Sandbox
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.store.runs import RunRow


def allowed_env(config: Config) -> dict[str, str]:
    """The environment gates and agents get: the policy's allowlist, from onloop's own environment.

    Python is told not to write bytecode caches: a gate must not leave files in the worktree that the
    next diff audit would have to tell apart from the agent's work.
    """
    import os

    env = {name: os.environ[name] for name in config.policy.env_allow if name in os.environ}
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return env


def run_all_gates(config: Config, worktree: Path, paths: RunPaths, scratch: Path, sandbox: Sandbox,
                  label: str) -> dict[str, GateRun]:
    """Every command and differential gate. Judge gates run apart (`run_judges`), after these pass."""
    return {name: run_one_gate(config, name, worktree, paths, scratch, sandbox, label)
            for name, gate in config.gates.items() if gate.kind != "judge"}


def run_one_gate(config: Config, name: str, worktree: Path, paths: RunPaths, scratch: Path, sandbox: Sandbox,
                 label: str) -> GateRun:
    gate = config.gates[name]
    if gate.kind == "differential":
        return run_differential_gate(name, gate, worktree=worktree, sandbox=sandbox)
    return run_gate(name, gate, worktree=worktree, scratch=scratch, log_dir=paths.logs, sandbox=sandbox,
                    env=allowed_env(config), label=label, limits=limits_from_policy(config.policy))


def run_judges(config: Config, subject: str) -> dict[str, GateRun]:
    return {name: run_judge_gate(name, gate, subject) for name, gate in config.gates.items() if gate.kind == "judge"}


def take_baseline(db: Database, row: RunRow, config: Config, paths: RunPaths, sandbox: Sandbox,
                  events: EventLog) -> dict[str, GateRun]:
    events.emit("baseline_started", f"baseline: running {len(config.gates)} gate(s) on {row.base_commit[:10]}")
    runs = run_all_gates(config, Path(row.worktree), paths, paths.scratch / "baseline", sandbox, "baseline")
    for name, run in runs.items():
        store.save_baseline(db, row.id, name, to_dict(run))
        failing = sorted(run.failing)
        events.emit("baseline_gate", f"baseline {name}: {len(run.checks)} checks, {len(failing)} failing",
                    gate=name, failing=failing[:50], checks=len(run.checks))
    return runs


def load_baseline(db: Database, run_id: str) -> dict[str, GateRun] | None:
    stored = store.load_baselines(db, run_id)
    return {name: from_dict(data) for name, data in stored.items()} if stored else None


def to_dict(run: GateRun) -> dict[str, Any]:
    return {
        "gate": run.gate, "exit_code": run.exit_code, "timed_out": run.timed_out, "duration": run.duration,
        "required": run.required, "log_path": str(run.log_path) if run.log_path else None,
        "checks": [[c.check_id, c.status.value, c.message, c.location] for c in run.checks],
    }


def from_dict(data: dict[str, Any]) -> GateRun:
    checks = tuple(CheckResult(cid, CheckStatus(status), message, location)
                   for cid, status, message, location in data["checks"])
    log_path = Path(data["log_path"]) if data.get("log_path") else None
    return GateRun(data["gate"], data["exit_code"], data["timed_out"], data["duration"], checks, log_path,
                   data.get("required", True))
