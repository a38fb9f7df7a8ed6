"""The bodies of the CLI commands, kept apart from typer's declarations so they stay small and testable."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table

from onloop.errors import UsageError
from onloop.store import runs as store
from onloop.store.db import Database

if TYPE_CHECKING:  # the engine and the config load only for the commands that need them
    from onloop.config import Config
    from onloop.loop.engine import RunOutcome

# Tables stay readable when the output is piped (rich would assume 80 columns).
console = Console(highlight=False, width=None if sys.stdout.isatty() else 132)


def do_run(path: Path, *, mode: str | None, max_iterations: int | None, max_time: str | None,
           budget: str | None, backend: str | None, resume: str | None, quiet: bool, json_output: bool,
           policy: Path | None = None, include_uncommitted: bool = False) -> int:
    from onloop.cli.progress import TerminalReporter
    from onloop.loop.api import resume_run, start_run
    from onloop.loop.events import JsonReporter, QuietReporter, Reporter

    reporter: Reporter = JsonReporter() if json_output else QuietReporter() if quiet else TerminalReporter()
    overrides: dict[str, Any] = {"mode": mode, "max_iterations": max_iterations, "max_time": max_time,
                                 "budget_usd": budget, "backend": backend}
    overrides = _validated(overrides)
    if resume:
        if policy is not None:
            raise UsageError("--policy applies to a new run; a resumed run keeps the policy it started with")
        if include_uncommitted:
            raise UsageError("--include-uncommitted applies to a new run; a resumed run keeps its base commit")
        outcome = resume_run(resume, reporter=reporter, **overrides)
    else:
        outcome = start_run(path.resolve(), reporter=reporter, config=_run_config(path, policy),
                            include_uncommitted=include_uncommitted, **overrides)
    if not json_output:
        print_outcome(outcome, Database.open_default())
    return outcome.exit_code


def _run_config(path: Path, policy: Path | None) -> Config | None:
    """The workspace's config with a run-level policy file over it, or None to let the run load it."""
    if policy is None:
        return None
    from onloop.config import CONFIG_FILE, load_config, with_policy_file
    from onloop.workspace import repo_root

    return with_policy_file(load_config(repo_root(path.resolve()) / CONFIG_FILE), policy.resolve())


def _validated(overrides: dict[str, Any]) -> dict[str, Any]:
    from pydantic import ValidationError

    from onloop.config import RunConfig
    from onloop.errors import ConfigError

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        RunConfig.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        flag = "--" + str(first["loc"][0]).replace("_usd", "").replace("_", "-")
        raise ConfigError(first["msg"].removeprefix("Value error, "), key=flag) from None
    return given


def print_outcome(outcome: RunOutcome, db: Database) -> None:
    receipts_table(db, outcome.run_id)
    style = "bold green" if outcome.exit_code == 0 else "bold yellow"
    console.print(f"run {outcome.run_id} stopped: {outcome.reason.value} (exit {outcome.exit_code}): "
                  f"{outcome.detail}", style=style, markup=False)


def receipts_table(db: Database, run_id: str) -> None:
    row = store.get_run(db, run_id)
    rows = [_receipt_cells(it) for it in store.get_iterations(db, run_id)]
    console.print(f"run {row.id}  {row.branch}  base {row.base_commit[:10]}", style="bold", markup=False)
    if console.width >= 110:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for column in ("#", "plan item", "agent", "tokens", "cost", "+/-", "gates", "incidents", "decision"):
            table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=34 if column == "plan item" else None)
        for cells in rows:
            table.add_row(*cells)
        console.print(table)
    else:  # a narrow terminal: one line per iteration reads better than a squeezed table
        for n, item, agent, tokens, cost, lines, gates, incidents, decision in rows:
            flags = f"[{incidents}] " if incidents != "-" else ""
            console.print(f"{n:>3} {agent:8} {gates:11} {tokens:>6} {cost:>7} {lines:>8}  {decision:10} {flags}{item}",
                          markup=False, overflow="ellipsis", no_wrap=True)
    console.print(f"spend ${row.spend_usd:.4f}  tokens {row.tokens_in}/{row.tokens_out}  "
                  f"iterations {row.iterations_done}", markup=False)


def _receipt_cells(it: dict[str, Any]) -> tuple[str, ...]:
    receipt = json.loads(it["receipt_json"]) if it["receipt_json"] else {}
    return (str(it["n"]), it["plan_item"] or "-", it["agent_status"] or it["status"],
            str(it["tokens_in"] + it["tokens_out"]), f"${float(it['cost_usd'] or 0):.3f}",
            f"+{it['lines_added']}/-{it['lines_removed']}", _gates_cell(receipt),
            ", ".join(dict.fromkeys(receipt.get("incidents", []))) or "-", _decision_cell(it))


def _gates_cell(receipt: dict[str, Any]) -> str:
    gates = receipt.get("gates") or {}
    if not gates:
        return "-" if receipt.get("status") != "rolled_back" else "rolled back"
    return " ".join(f"{name}:{_gate_word(g)}" for name, g in gates.items())


def _gate_word(gate: dict[str, Any]) -> str:
    status = str(gate.get("status", ""))
    if status == "broken":
        return "BROKEN"
    if status.startswith("pass"):
        return "ok"
    return "FAIL" if gate.get("new_failures") else f"{len(gate.get('targets_left', []))}left"


def _decision_cell(it: dict[str, Any]) -> str:
    if it["decision"] == "stop" and it["reason"]:
        return "stop: " + str(it["reason"]).split(":", 1)[0]
    return str(it["decision"] or it["status"])


def do_status() -> None:
    from onloop.loop.setup import GONE_STATUS, resume_command, shown_status

    db = Database.open_default()
    rows = store.list_runs(db, 10)
    if not rows:
        console.print("no runs yet: `onloop init` then `onloop run`")
        return
    shown = [(row, shown_status(row)) for row in rows]
    active = [(row, status) for row, status in shown if status in ("running", "paused", "created")]
    for row, status in active:
        console.print(f"{status:8} {row.id}  iteration {row.iterations_done}  ${row.spend_usd:.4f}  "
                      f"{row.workspace}", markup=False)
    if not active:
        console.print("no run is going on now")
    for row, status in shown:
        if status == GONE_STATUS:
            console.print(f"{status} {row.id}  iteration {row.iterations_done}  ${row.spend_usd:.4f}  "
                          f"{row.workspace}\n  resume with: {resume_command(row)}", style="yellow", markup=False,
                          soft_wrap=True)
    do_runs(5)


def do_runs(limit: int) -> None:
    from onloop.loop.setup import GONE_STATUS, resume_command, shown_status

    db = Database.open_default()
    rows = [(row, shown_status(row)) for row in store.list_runs(db, limit)]
    table = Table(title="runs")
    # A run id is copied into other commands: it never wraps, folds or shrinks.
    table.add_column("run", no_wrap=True, min_width=max((len(row.id) for row, _ in rows), default=3))
    for column in ("status", "reason", "exit", "iterations", "spend", "mode", "workspace", "started"):
        table.add_column(column, overflow="fold")
    for row, status in rows:
        table.add_row(row.id, status, row.stop_reason or "-", "-" if row.exit_code is None else str(row.exit_code),
                      str(row.iterations_done), f"${row.spend_usd:.4f}", row.mode, row.workspace, row.created_at)
    console.print(table)
    for row, status in rows:
        if status == GONE_STATUS:
            console.print(f"run {row.id}: {status}; resume with: {resume_command(row)}", markup=False, soft_wrap=True)


def do_show(run_id: str, iteration: int | None, json_output: bool) -> None:
    db = Database.open_default()
    row = store.get_run(db, run_id)
    if iteration is None:
        if json_output:
            payload = {"run": _row_dict(row),
                       "iterations": [_receipt(it) for it in store.get_iterations(db, row.id)],
                       "incidents": store.incidents(db, row.id)}
            print(json.dumps(payload, indent=1, default=str))
            return
        receipts_table(db, row.id)
        console.print(f"status {row.status}  reason {row.stop_reason or '-'}  {row.stop_detail or ''}", markup=False)
        _targets_left(store.get_iterations(db, row.id))
        console.print(f"worktree {row.worktree}\nlogs     {Path(row.worktree).parent / 'logs'}", markup=False)
        return
    _show_iteration(db, row.id, iteration, json_output)


def _targets_left(iterations: list[dict[str, Any]]) -> None:
    """The targets (checks failing at baseline that must pass) the last judged iteration left."""
    judged = [r for r in map(_receipt, iterations) if r.get("gates")]
    if not judged:
        return
    for name, gate in sorted(judged[-1]["gates"].items()):
        left = gate.get("targets_left") or []
        if gate.get("broken"):
            console.print(f"gate {name}: broken: {gate['broken']}", style="red", markup=False)
        elif left:
            console.print(f"gate {name}: {len(left)} of {gate.get('targets', len(left))} target(s) left: "
                          f"{', '.join(left[:20])}{' ...' if len(left) > 20 else ''}", markup=False)
        elif gate.get("targets"):
            console.print(f"gate {name}: all {gate['targets']} target(s) met", markup=False)


def _row_dict(row: store.RunRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in row.__slots__}


def _receipt(it: dict[str, Any]) -> dict[str, Any]:
    return json.loads(it["receipt_json"]) if it["receipt_json"] else {"iteration": it["n"], "status": it["status"]}


def _show_iteration(db: Database, run_id: str, n: int, json_output: bool) -> None:
    it = store.get_iteration(db, run_id, n)
    receipt = _receipt(it)
    incidents = store.incidents(db, run_id, n)
    if json_output:
        print(json.dumps({"receipt": receipt, "incidents": incidents}, indent=1, default=str))
        return
    console.print(f"iteration {n} of run {run_id}: {it['status']}", style="bold", markup=False)
    for key in ("plan_item", "backend", "model", "agent_status", "agent_error", "attempts", "tokens_in", "tokens_out",
                "cost_usd", "cost_source", "wall_seconds", "claimed_done", "commit", "tag", "decision", "reason"):
        if key in receipt:
            console.print(f"  {key:13} {receipt[key]}", markup=False)
    delta = receipt.get("delta") or {}
    if delta:
        console.print(f"  diff stat     {delta.get('files_changed')} file(s), +{delta.get('lines_added')} "
                      f"-{delta.get('lines_removed')}", markup=False)
    for name, gate in (receipt.get("gates") or {}).items():
        if gate.get("broken"):
            console.print(f"  gate {name}: broken: {gate['broken']}", style="red", markup=False)
            continue
        console.print(f"  gate {name}: {gate['status']}  new {gate['new_failures'][:10]}  fixed "
                      f"{gate['fixed'][:10]}  targets left {gate.get('targets_left', [])[:10]}  tolerated "
                      f"{len(gate.get('tolerated', []))}  report: {gate.get('report') or '-'}", markup=False)
        if gate.get("reference_failed"):
            console.print(f"  gate {name}: {len(gate['reference_failed'])} input(s) not judged (the reference failed "
                          f"on them): {gate['reference_failed'][:10]}", style="yellow", markup=False)
    for reason in receipt.get("review") or []:
        console.print(f"  review        {reason}", style="yellow", markup=False)
    for incident in incidents:
        console.print(f"  incident {incident['kind']}: {incident['summary']}", style="red", markup=False)
    console.print(f"  transcript    {it['transcript_path']}", markup=False)


def do_log(run_id: str, follow: bool, json_output: bool) -> None:
    db = Database.open_default()
    row = store.get_run(db, run_id)
    last = 0
    while True:
        for event in store.events_after(db, row.id, last):
            last = event["id"]
            if json_output:
                print(json.dumps(event, default=str))
            else:
                where = f"[{event['iteration']}] " if event["iteration"] else ""
                print(f"{event['ts']} {where}{event['kind']}: {event['message']}")
        sys.stdout.flush()
        if not follow or store.get_run(db, row.id).status == "stopped":
            if follow:  # print what arrived between the last poll and the stop
                for event in store.events_after(db, row.id, last):
                    print(f"{event['ts']} {event['kind']}: {event['message']}")
            return
        time.sleep(0.5)


def do_steer(run_id: str, command: str, message: str | None) -> None:
    from onloop.clock import SystemClock
    from onloop.loop.setup import GONE_STATUS, resume_command, shown_status
    from onloop.loop.steering import COMMANDS, steer

    if command not in COMMANDS:
        raise UsageError(f"unknown steering command {command!r} (allowed: {', '.join(COMMANDS)})")
    if command == "say" and not message:
        raise UsageError('`say` needs a message: onloop steer RUN say "..."')
    db = Database.open_default()
    steer(db, run_id, command, message, SystemClock())
    row = store.get_run(db, run_id)
    status = shown_status(row)
    later = f"; it is read when the run is resumed: {resume_command(row)}" if status == GONE_STATUS else ""
    console.print(f"{command} queued for run {row.id} ({status}){later}", markup=False, soft_wrap=True)
