"""The tables of the state database, as ordered named migrations.

Runs, iterations (whose row is the receipt), events (the run log), incidents, steering messages and
baselines. Money is stored as TEXT holding a Decimal, never as a float. Subsystems with tables of
their own (memory, automations, ...) register their migrations in their own modules, imported here at
the end so that the order is fixed.
"""

from __future__ import annotations

import sqlite3

from onloop.store.db import migration


def _execute_each(conn: sqlite3.Connection, script: str) -> None:
    """Run a script statement by statement: unlike `executescript`, this stays inside the migration's
    transaction, so a migration is applied whole or not at all."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


@migration("0001_runs")
def _runs(conn: sqlite3.Connection) -> None:
    _execute_each(
        conn,
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            workspace TEXT NOT NULL,
            worktree TEXT NOT NULL,
            branch TEXT NOT NULL,
            base_commit TEXT NOT NULL,
            mode TEXT NOT NULL,
            backend TEXT NOT NULL,
            status TEXT NOT NULL,             -- created | running | paused | stopped
            stop_reason TEXT,
            stop_detail TEXT,
            exit_code INTEGER,
            config_json TEXT NOT NULL,        -- the effective config, frozen at start
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            elapsed_seconds REAL NOT NULL DEFAULT 0,   -- active time, persisted across resumes
            iterations_done INTEGER NOT NULL DEFAULT 0,
            spend_usd TEXT NOT NULL DEFAULT '0',
            tokens_in INTEGER NOT NULL DEFAULT 0,
            tokens_out INTEGER NOT NULL DEFAULT 0,
            no_progress_streak INTEGER NOT NULL DEFAULT 0,
            stuck_streak INTEGER NOT NULL DEFAULT 0,
            last_fingerprint TEXT,
            agent_error_streak INTEGER NOT NULL DEFAULT 0,
            breaches INTEGER NOT NULL DEFAULT 0,
            last_checkpoint TEXT,             -- commit the worktree is at after the last iteration
            pid INTEGER,
            heartbeat_at TEXT
        );
        CREATE TABLE iterations (
            run_id TEXT NOT NULL REFERENCES runs(id),
            n INTEGER NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 1,
            status TEXT NOT NULL,             -- running | completed | interrupted | rolled_back
            plan_item TEXT,
            backend TEXT,
            model TEXT,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            wall_seconds REAL,
            tokens_in INTEGER NOT NULL DEFAULT 0,
            tokens_out INTEGER NOT NULL DEFAULT 0,
            cost_usd TEXT,
            cost_source TEXT,
            agent_status TEXT,
            claimed_done INTEGER NOT NULL DEFAULT 0,
            files_changed INTEGER NOT NULL DEFAULT 0,
            lines_added INTEGER NOT NULL DEFAULT 0,
            lines_removed INTEGER NOT NULL DEFAULT 0,
            commit_sha TEXT,
            tag TEXT,
            gates_json TEXT,                  -- per gate: verdict, new/fixed/pre-existing failures
            delta_json TEXT,                  -- the verified delta
            decision TEXT,                    -- continue | stop
            reason TEXT,
            transcript_path TEXT,
            receipt_json TEXT,                -- the whole receipt, as shown
            PRIMARY KEY (run_id, n)
        );
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            iteration INTEGER,
            ts TEXT NOT NULL,
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            data_json TEXT
        );
        CREATE INDEX events_run ON events(run_id, id);
        CREATE TABLE incidents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            iteration INTEGER,
            ts TEXT NOT NULL,
            kind TEXT NOT NULL,               -- false_done | tamper | protected_path | secret | ...
            severity TEXT NOT NULL,
            summary TEXT NOT NULL,
            evidence_json TEXT
        );
        CREATE INDEX incidents_run ON incidents(run_id);
        CREATE TABLE steering (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            ts TEXT NOT NULL,
            command TEXT NOT NULL,            -- pause | resume | stop | say
            message TEXT,
            consumed_at TEXT,
            consumed_iteration INTEGER
        );
        CREATE INDEX steering_run ON steering(run_id, consumed_at);
        CREATE TABLE baselines (
            run_id TEXT NOT NULL,
            gate TEXT NOT NULL,
            result_json TEXT NOT NULL,
            PRIMARY KEY (run_id, gate)
        );
        """
    )




@migration("0002_quarantine")
def _quarantine(conn: sqlite3.Connection) -> None:
    _execute_each(
        conn,
        """
        CREATE TABLE quarantine (
            workspace TEXT NOT NULL,
            gate TEXT NOT NULL,
            check_id TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            times INTEGER NOT NULL DEFAULT 1,   -- how often it failed then passed on an immediate re-run
            PRIMARY KEY (workspace, gate, check_id)
        )
        """,
    )


@migration("0003_quarantine_scope")
def _quarantine_scope(conn: sqlite3.Connection) -> None:
    """A quarantine is scoped: made by a run for that run only (`scope` = the run id) until an
    operator confirms it for the workspace (`scope` = ''). Entries from before were workspace-wide."""
    _execute_each(
        conn,
        """
        CREATE TABLE quarantine_scoped (
            workspace TEXT NOT NULL,
            gate TEXT NOT NULL,
            check_id TEXT NOT NULL,
            scope TEXT NOT NULL DEFAULT '',   -- '' for the workspace, else the run id that saw it flip
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            times INTEGER NOT NULL DEFAULT 1,
            evidence TEXT,                    -- what showed it flaky (candidate and base re-runs)
            PRIMARY KEY (workspace, gate, check_id, scope)
        );
        INSERT INTO quarantine_scoped (workspace, gate, check_id, scope, first_seen, last_seen, times)
            SELECT workspace, gate, check_id, '', first_seen, last_seen, times FROM quarantine;
        DROP TABLE quarantine;
        ALTER TABLE quarantine_scoped RENAME TO quarantine
        """,
    )


@migration("0004_receipt_permission_denials")
def _receipt_permission_denials(conn: sqlite3.Connection) -> None:
    """How many of the agent's actions its permission system (or onloop's guard hook) refused in the
    iteration: a run whose writes were all denied otherwise looks like a quiet success."""
    conn.execute("ALTER TABLE iterations ADD COLUMN permission_denials INTEGER NOT NULL DEFAULT 0")


# Subsystems append their own migrations by importing their schema modules here, in a fixed order.
import onloop.memory.schema  # noqa: E402, F401
