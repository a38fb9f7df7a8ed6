"""The quarantine list: checks shown to be flaky, on evidence, and who decided how far it reaches.

A check is flaky only when it flips on the candidate (it fails, then passes on an identical re-run)
AND also flips on the base commit (re-run there, its outcome differs from the baseline's): the code
under test cannot make a check flaky on its own word. Such a check is quarantined for the run that
saw it (`scope` = the run id): it neither blocks "done" nor counts in that run. It reaches the rest
of the workspace's runs only when an operator confirms it (`onloop quarantine confirm`), and leaves
with `onloop quarantine remove`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from onloop.store.db import Database

WORKSPACE = ""  # the scope of a confirmed quarantine


def add(db: Database, workspace: str, gate: str, check_ids: Iterable[str], ts: str, *, run_id: str,
        evidence: str = "") -> None:
    """Quarantine checks for one run (they flipped on the candidate and on the base)."""
    with db.transaction() as tx:
        for check_id in check_ids:
            tx.execute(
                "INSERT INTO quarantine (workspace, gate, check_id, scope, first_seen, last_seen, evidence) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workspace, gate, check_id, scope) DO UPDATE SET "
                "last_seen = excluded.last_seen, times = times + 1, evidence = excluded.evidence",
                (workspace, gate, check_id, run_id, ts, ts, evidence))


def quarantined(db: Database, workspace: str, gate: str, run_id: str | None = None) -> frozenset[str]:
    """Checks quarantined for the workspace, and for `run_id`'s own run."""
    rows = db.conn.execute("SELECT check_id FROM quarantine WHERE workspace = ? AND gate = ? AND scope IN (?, ?)",
                           (workspace, gate, WORKSPACE, run_id or WORKSPACE))
    return frozenset(r[0] for r in rows.fetchall())


def confirm(db: Database, workspace: str, gate: str, check_id: str, ts: str) -> bool:
    """An operator's decision: a check some run found flaky is flaky for every run of the workspace."""
    with db.transaction() as tx:
        seen = tx.execute("SELECT MIN(first_seen), SUM(times), MAX(evidence) FROM quarantine WHERE workspace = ? "
                          "AND gate = ? AND check_id = ? AND scope != ?", (workspace, gate, check_id, WORKSPACE))
        first, times, evidence = seen.fetchone()
        if first is None:
            return False
        tx.execute("INSERT INTO quarantine (workspace, gate, check_id, scope, first_seen, last_seen, times, evidence) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workspace, gate, check_id, scope) DO UPDATE SET "
                   "last_seen = excluded.last_seen", (workspace, gate, check_id, WORKSPACE, first, ts, times, evidence))
        return True


def list_all(db: Database, workspace: str | None = None) -> list[dict[str, Any]]:
    if workspace is None:
        rows = db.conn.execute("SELECT * FROM quarantine ORDER BY workspace, gate, check_id, scope")
    else:
        rows = db.conn.execute("SELECT * FROM quarantine WHERE workspace = ? ORDER BY gate, check_id, scope",
                               (workspace,))
    return [dict(r) for r in rows.fetchall()]


def remove(db: Database, workspace: str, gate: str, check_id: str) -> bool:
    """Out of quarantine everywhere (the workspace and every run)."""
    with db.transaction() as tx:
        done = tx.execute("DELETE FROM quarantine WHERE workspace = ? AND gate = ? AND check_id = ?",
                          (workspace, gate, check_id))
        return done.rowcount > 0
