"""Live steering: pause, resume, stop, and messages the next iteration cannot ignore.

`onloop steer RUN ...` writes a row to the `steering` table; the loop reads pending rows before every
iteration (consuming them in one transaction). A `say` message is put at the very top of the next
iteration's context and recorded with the iteration that received it. `pause` holds the loop between
iterations until `resume` or `stop`. Paused time counts against `max_time`: it is a wall-clock cap.

A stopped run reads no steering, so steering it is refused (a UsageError naming its status) rather
than queued where nothing will ever read it. A run whose process is gone still takes steering: the
commands wait for `--resume`, and `steer` says so.
"""

from __future__ import annotations

from onloop.clock import Clock, utc_iso
from onloop.errors import StopRun, UsageError
from onloop.loop.events import EventLog
from onloop.loop.setup import is_finished, resume_command
from onloop.loop.stop import StopReason
from onloop.store import runs as store
from onloop.store.db import Database

PAUSE_POLL_SECONDS = 0.5
COMMANDS = ("pause", "resume", "stop", "say")


def steer(db: Database, run_id: str, command: str, message: str | None, clock: Clock) -> None:
    row = store.get_run(db, run_id)  # raises NotFoundError with a hint
    if row.status == "stopped":
        how = f"stopped ({row.stop_reason}, exit {row.exit_code})"
        then = "it is final" if is_finished(row) else f"resume it first: `{resume_command(row)}`"
        raise UsageError(f"run {row.id} is {how}: nothing reads steering now; {then}")
    store.add_steering(db, row.id, utc_iso(clock.now()), command, message)


def apply_steering(db: Database, run_id: str, clock: Clock, events: EventLog, next_iteration: int) -> list[str]:
    """Handle pending commands; returns the messages for the next iteration. Raises StopRun on stop."""
    messages: list[str] = []
    paused = False
    while True:
        for row in store.take_steering(db, run_id, utc_iso(clock.now()), next_iteration):
            command = row["command"]
            if command == "say" and row["message"]:
                messages.append(row["message"])
                events.emit("steering", f"message queued for iteration {next_iteration}", text=row["message"])
            elif command == "stop":
                events.emit("steering", "stop requested by the operator")
                raise StopRun(StopReason.INTERRUPTED, "stopped by the operator (onloop steer stop)")
            elif command == "pause" and not paused:
                paused = True
                store.update_run(db, run_id, {"status": "paused"})
                events.emit("steering", "paused by the operator; waiting for resume")
            elif command == "resume" and paused:
                paused = False
                store.update_run(db, run_id, {"status": "running"})
                events.emit("steering", "resumed by the operator")
        if not paused:
            return messages
        clock.sleep(PAUSE_POLL_SECONDS)
