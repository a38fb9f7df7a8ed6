"""The quarantine list: checks known to be flaky in a workspace.

A check that fails and then passes on one immediate re-run of its gate is flaky: it is recorded here,
and from then on it neither blocks "done" nor counts as progress or regression in that workspace, until
the operator removes it (`onloop quarantine remove`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from onloop.store.db import Database


def add(db: Database, workspace: str, gate: str, check_ids: Iterable[str], ts: str) -> None:
    with db.transaction() as tx:
        for check_id in check_ids:
            tx.execute(
                "INSERT INTO quarantine (workspace, gate, check_id, first_seen, last_seen) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (workspace, gate, check_id) DO UPDATE SET last_seen = excluded.last_seen, "
                "times = times + 1", (workspace, gate, check_id, ts, ts))


def quarantined(db: Database, workspace: str, gate: str) -> frozenset[str]:
    rows = db.conn.execute("SELECT check_id FROM quarantine WHERE workspace = ? AND gate = ?", (workspace, gate))
    return frozenset(r[0] for r in rows.fetchall())


def list_all(db: Database, workspace: str | None = None) -> list[dict[str, Any]]:
    if workspace is None:
        rows = db.conn.execute("SELECT * FROM quarantine ORDER BY workspace, gate, check_id")
    else:
        rows = db.conn.execute("SELECT * FROM quarantine WHERE workspace = ? ORDER BY gate, check_id", (workspace,))
    return [dict(r) for r in rows.fetchall()]


def remove(db: Database, workspace: str, gate: str, check_id: str) -> bool:
    with db.transaction() as tx:
        done = tx.execute("DELETE FROM quarantine WHERE workspace = ? AND gate = ? AND check_id = ?",
                          (workspace, gate, check_id))
        return done.rowcount > 0
