"""The baseline: every gate run once on the untouched base commit, before the first iteration.

Stored per run (so `--resume` never re-takes it against a changed tree) with every check's status.
What it decides:
- a required gate that is *broken* at baseline (it could not start, was killed, its runner failed)
  stops the run `blocked` before iteration 1, with the gate's own error and what to do about it:
  every later verdict would otherwise be measured against nothing;
- every check failing at baseline is a *target* that must pass for "done", unless the operator
  tolerates it; the baseline summary says which are which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onloop.config import Config
from onloop.errors import StopRun
from onloop.gates.baseline import tolerance
from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.runner import GateRun
from onloop.loop.events import EventLog
from onloop.loop.gating import Gates
from onloop.loop.stop import StopReason
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.store.runs import RunRow


def take_baseline(db: Database, row: RunRow, config: Config, gates: Gates, events: EventLog) -> dict[str, GateRun]:
    events.emit("baseline_started", f"baseline: running {len(config.gates)} gate(s) on {row.base_commit[:10]}")
    runs = gates.run_all(gates.base_tree, "baseline")
    for name, run in runs.items():
        store.save_baseline(db, row.id, name, to_dict(run))
        _announce(config, name, run, events)
    refuse_broken(config, runs)
    return runs


def _announce(config: Config, name: str, run: GateRun, events: EventLog) -> None:
    if run.broken:
        events.emit("baseline_gate", f"baseline {name}: BROKEN: {run.broken}", gate=name, broken=run.broken,
                    report=run.report)
        return
    gate = config.gates[name]
    tolerate = tolerance(gate.tolerate, gate.tolerate_preexisting)
    failing = sorted(run.failing)
    tolerated = [c for c in failing if tolerate(c)]
    targets = [c for c in failing if not tolerate(c)]
    unjudged = sorted(c.check_id for c in run.checks if c.status is CheckStatus.REFERENCE_FAILED)
    summary = f"baseline {name}: {len(run.checks)} checks, {len(failing)} failing"
    if failing:
        summary += f": {len(targets)} target(s) that must pass, {len(tolerated)} tolerated"
    if unjudged:
        summary += f"; {len(unjudged)} input(s) the reference itself fails on (never judged)"
    events.emit("baseline_gate", summary, gate=name, checks=len(run.checks), failing=failing[:50],
                targets=targets[:50], tolerated=tolerated[:50], reference_failed=unjudged[:50], report=run.report)


def refuse_broken(config: Config, runs: dict[str, GateRun]) -> None:
    """Stop before iteration 1 when a required gate gave no result on the base commit."""
    broken = {name: run for name, run in runs.items() if run.broken and run.required}
    if not broken:
        return
    lines = [f"gate {name!r} is broken on the base commit: {run.broken}. {fix_hint(run)}"
             for name, run in sorted(broken.items())]
    raise StopRun(StopReason.BLOCKED, " | ".join(lines))


def fix_hint(run: GateRun) -> str:
    """What the operator can do about a broken gate, from what broke it."""
    reason = run.broken or ""
    if "could not run" in reason or "cannot be started" in reason:
        return ("Fix: the command, or a path it needs, is not visible in the sandbox (only system dirs, "
                "policy.readable and the run's checkout are): use a command on the system PATH or add its "
                "directory to policy.readable; `onloop policy check` shows what the sandbox sees.")
    if "timed out" in reason:
        return "Fix: raise the gate's timeout, or narrow what it runs."
    if "did not load" in reason:
        return "Fix: the gate's pytest must be able to import onloop's plugin (do not disable plugins with -p no:...)."
    if "exit status 5" in reason or "no tests" in reason:
        return "Fix: pytest collected no tests on the base commit: check the command, testpaths and the test layout."
    return ("Fix: the test suite cannot run on the base commit: fix its error (above: a missing dependency, an "
            "ImportError in conftest.py, a bad option) and commit, or run its dependencies where the sandbox "
            "sees them (policy.readable).")


def load_baseline(db: Database, run_id: str) -> dict[str, GateRun] | None:
    stored = store.load_baselines(db, run_id)
    return {name: from_dict(data) for name, data in stored.items()} if stored else None


def to_dict(run: GateRun) -> dict[str, Any]:
    return {
        "gate": run.gate, "exit_code": run.exit_code, "timed_out": run.timed_out, "duration": run.duration,
        "required": run.required, "log_path": str(run.log_path) if run.log_path else None,
        "broken": run.broken, "report": run.report, "plugins": list(run.plugins),
        "checks": [[c.check_id, c.status.value, c.message, c.location] for c in run.checks],
    }


def from_dict(data: dict[str, Any]) -> GateRun:
    checks = tuple(CheckResult(cid, CheckStatus(status), message, location)
                   for cid, status, message, location in data["checks"])
    log_path = Path(data["log_path"]) if data.get("log_path") else None
    return GateRun(data["gate"], data["exit_code"], data["timed_out"], data["duration"], checks, log_path,
                   data.get("required", True), data.get("broken"), data.get("report", ""),
                   tuple(data.get("plugins", ())))
