"""Reading and writing runs, iterations (receipts), events, incidents, steering and baselines.

The functions here are the only SQL the loop, the CLI and the dashboard use for runs, so they all see
the same truth. Writes that belong together (an iteration's receipt and the run's counters and spend)
go through `finish_iteration` in one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from onloop.errors import NotFoundError
from onloop.store.db import Database


@dataclass(frozen=True, slots=True)
class RunRow:
    id: str
    workspace: str
    worktree: str
    branch: str
    base_commit: str
    mode: str
    backend: str
    status: str
    stop_reason: str | None
    stop_detail: str | None
    exit_code: int | None
    config_json: str
    created_at: str
    updated_at: str
    elapsed_seconds: float
    iterations_done: int
    spend_usd: Decimal
    tokens_in: int
    tokens_out: int
    no_progress_streak: int
    stuck_streak: int
    last_fingerprint: str | None
    agent_error_streak: int
    breaches: int
    last_checkpoint: str | None
    pid: int | None
    heartbeat_at: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRow:
        data = dict(row)
        data["spend_usd"] = Decimal(data["spend_usd"])
        return cls(**data)


# Counters the loop persists after every iteration, so a restart continues exactly.
COUNTER_FIELDS = ("elapsed_seconds", "iterations_done", "spend_usd", "tokens_in", "tokens_out",
                  "no_progress_streak", "stuck_streak", "last_fingerprint", "agent_error_streak", "breaches",
                  "last_checkpoint")


def _sql_value(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def insert_run(db: Database, values: Mapping[str, Any]) -> None:
    columns = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    with db.transaction() as tx:
        tx.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", [_sql_value(v) for v in values.values()])


def get_run(db: Database, run_id: str) -> RunRow:
    row = db.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        row = db.conn.execute("SELECT * FROM runs WHERE id LIKE ? ORDER BY created_at DESC",
                              (run_id + "%",)).fetchone()
    if row is None:
        raise NotFoundError(f"no run {run_id!r} (see `onloop runs`)")
    return RunRow.from_row(row)


def list_runs(db: Database, limit: int = 50) -> list[RunRow]:
    rows = db.conn.execute("SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
    return [RunRow.from_row(r) for r in rows]


def update_run(db: Database, run_id: str, values: Mapping[str, Any], tx: sqlite3.Connection | None = None) -> None:
    assignments = ", ".join(f"{key} = ?" for key in values)
    params = [_sql_value(v) for v in values.values()] + [run_id]
    sql = f"UPDATE runs SET {assignments}, updated_at = datetime('now') WHERE id = ?"
    if tx is not None:
        tx.execute(sql, params)
    else:
        with db.transaction() as own:
            own.execute(sql, params)


def begin_iteration(db: Database, run_id: str, n: int, attempt: int, values: Mapping[str, Any]) -> None:
    """Record that iteration n started: after a crash it is found as `running` and marked interrupted."""
    with db.transaction() as tx:
        tx.execute("DELETE FROM iterations WHERE run_id = ? AND n = ? AND status = 'running'", (run_id, n))
        columns = ["run_id", "n", "attempt", "status", *values]
        params = [run_id, n, attempt, "running", *(_sql_value(v) for v in values.values())]
        tx.execute(f"INSERT INTO iterations ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
                   params)


def finish_iteration(db: Database, run_id: str, n: int, receipt: Mapping[str, Any],
                     run_counters: Mapping[str, Any]) -> None:
    """The receipt and the run's counters in one transaction: both survive a crash, or neither."""
    columns = {k: _sql_value(v) for k, v in receipt.items()}
    with db.transaction() as tx:
        assignments = ", ".join(f"{key} = ?" for key in columns)
        tx.execute(f"UPDATE iterations SET {assignments} WHERE run_id = ? AND n = ?", [*columns.values(), run_id, n])
        update_run(db, run_id, run_counters, tx=tx)


def get_iterations(db: Database, run_id: str) -> list[dict[str, Any]]:
    rows = db.conn.execute("SELECT * FROM iterations WHERE run_id = ? ORDER BY n", (run_id,)).fetchall()
    return [dict(r) for r in rows]


def get_iteration(db: Database, run_id: str, n: int) -> dict[str, Any]:
    row = db.conn.execute("SELECT * FROM iterations WHERE run_id = ? AND n = ?", (run_id, n)).fetchone()
    if row is None:
        raise NotFoundError(f"run {run_id} has no iteration {n}")
    return dict(row)


def running_iterations(db: Database, run_id: str) -> list[dict[str, Any]]:
    rows = db.conn.execute("SELECT * FROM iterations WHERE run_id = ? AND status = 'running'", (run_id,))
    return [dict(r) for r in rows.fetchall()]


def add_event(db: Database, run_id: str, iteration: int | None, ts: str, kind: str, message: str,
              data: Mapping[str, Any] | None = None) -> int:
    with db.transaction() as tx:
        cur = tx.execute(
            "INSERT INTO events (run_id, iteration, ts, kind, message, data_json) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, iteration, ts, kind, message, json.dumps(data, default=str) if data else None),
        )
        return int(cur.lastrowid or 0)


def events_after(db: Database, run_id: str, after_id: int = 0) -> list[dict[str, Any]]:
    rows = db.conn.execute("SELECT * FROM events WHERE run_id = ? AND id > ? ORDER BY id", (run_id, after_id))
    return [dict(r) for r in rows.fetchall()]


def add_incident(db: Database, run_id: str, iteration: int | None, ts: str, kind: str, severity: str,
                 summary: str, evidence: Mapping[str, Any] | None = None) -> None:
    with db.transaction() as tx:
        tx.execute(
            "INSERT INTO incidents (run_id, iteration, ts, kind, severity, summary, evidence_json) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, iteration, ts, kind, severity, summary, json.dumps(evidence, default=str) if evidence else None),
        )


def incidents(db: Database, run_id: str, iteration: int | None = None) -> list[dict[str, Any]]:
    if iteration is None:
        rows = db.conn.execute("SELECT * FROM incidents WHERE run_id = ? ORDER BY id", (run_id,))
    else:
        rows = db.conn.execute("SELECT * FROM incidents WHERE run_id = ? AND iteration = ? ORDER BY id",
                               (run_id, iteration))
    return [dict(r) for r in rows.fetchall()]


def add_steering(db: Database, run_id: str, ts: str, command: str, message: str | None = None) -> None:
    with db.transaction() as tx:
        tx.execute("INSERT INTO steering (run_id, ts, command, message) VALUES (?, ?, ?, ?)",
                   (run_id, ts, command, message))


def take_steering(db: Database, run_id: str, ts: str, iteration: int | None) -> list[dict[str, Any]]:
    """Pending steering commands, oldest first, marked consumed in the same transaction."""
    with db.transaction() as tx:
        rows = [dict(r) for r in tx.execute(
            "SELECT * FROM steering WHERE run_id = ? AND consumed_at IS NULL ORDER BY id", (run_id,))]
        if rows:
            tx.execute("UPDATE steering SET consumed_at = ?, consumed_iteration = ? "
                       "WHERE run_id = ? AND consumed_at IS NULL AND id <= ?", (ts, iteration, run_id, rows[-1]["id"]))
    return rows


def save_baseline(db: Database, run_id: str, gate: str, result: Mapping[str, Any]) -> None:
    with db.transaction() as tx:
        tx.execute("INSERT OR REPLACE INTO baselines (run_id, gate, result_json) VALUES (?, ?, ?)",
                   (run_id, gate, json.dumps(result)))


def load_baselines(db: Database, run_id: str) -> dict[str, dict[str, Any]]:
    rows = db.conn.execute("SELECT gate, result_json FROM baselines WHERE run_id = ?", (run_id,))
    return {r["gate"]: json.loads(r["result_json"]) for r in rows.fetchall()}


def iter_all_runs(db: Database) -> Iterator[RunRow]:
    for row in db.conn.execute("SELECT * FROM runs ORDER BY created_at"):
        yield RunRow.from_row(row)


def update_iteration_fields(db: Database, run_id: str, n: int, values: Mapping[str, Any]) -> None:
    assignments = ", ".join(f"{key} = ?" for key in values)
    with db.transaction() as tx:
        tx.execute(f"UPDATE iterations SET {assignments} WHERE run_id = ? AND n = ?",
                   [*(_sql_value(v) for v in values.values()), run_id, n])


def last_receipt(db: Database, run_id: str) -> dict[str, Any] | None:
    row = db.conn.execute("SELECT receipt_json FROM iterations WHERE run_id = ? AND receipt_json IS NOT NULL "
                          "ORDER BY n DESC LIMIT 1", (run_id,)).fetchone()
    return json.loads(row["receipt_json"]) if row else None
