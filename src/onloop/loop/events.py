"""The run's event stream: every step of the loop is an event, stored and shown live.

Events go to the `events` table (what `onloop log --follow` and the dashboard read) and to a
`Reporter`, which renders them for the terminal: a live status line, nothing (`--quiet`), or JSON
lines (`--json`). Any sink that wants the stream subscribes through the same `Reporter` interface.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, Protocol, TextIO

from onloop.clock import Clock, utc_iso
from onloop.policy.secrets import scrub
from onloop.store import runs as store
from onloop.store.db import Database


class Reporter(Protocol):
    def report(self, kind: str, message: str, data: Mapping[str, Any]) -> None: ...


class QuietReporter:
    def report(self, kind: str, message: str, data: Mapping[str, Any]) -> None:
        return None


class JsonReporter:
    """One JSON object per line on stdout: machine-readable progress (`--json`)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def report(self, kind: str, message: str, data: Mapping[str, Any]) -> None:
        self.stream.write(json.dumps({"kind": kind, "message": message, **data}, default=str) + "\n")
        self.stream.flush()


class EventLog:
    def __init__(self, db: Database, run_id: str, clock: Clock, reporter: Reporter) -> None:
        self.db = db
        self.run_id = run_id
        self.clock = clock
        self.reporter = reporter
        self.iteration: int | None = None

    def emit(self, kind: str, message: str, /, **data: Any) -> None:
        message = scrub(message)
        data = {k: scrub(v) if isinstance(v, str) else v for k, v in data.items()}
        store.add_event(self.db, self.run_id, self.iteration, utc_iso(self.clock.now()), kind, message,
                        data or None)
        self.reporter.report(kind, message, {"run_id": self.run_id, "iteration": self.iteration, **data})

    def incident(self, kind: str, summary: str, /, *, severity: str = "high", **evidence: Any) -> None:
        summary = scrub(summary)
        evidence = {k: scrub(v) if isinstance(v, str) else v for k, v in evidence.items()}
        store.add_incident(self.db, self.run_id, self.iteration, utc_iso(self.clock.now()), kind, severity,
                           summary, evidence or None)
        self.emit("incident", f"{kind}: {summary}", incident=kind, severity=severity)
