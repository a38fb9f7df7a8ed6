"""Live progress in the terminal: one line per meaningful event, and a status line that keeps up.

The status line shows the iteration, the plan item, elapsed time, spend and the last gate results;
agent chatter (every tool call) updates it without scrolling the screen. `--quiet` prints nothing but
the final outcome; `--json` prints one JSON object per event instead (`onloop.loop.events.JsonReporter`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.status import Status

_LINE_KINDS = {
    "run_started", "run_resumed", "baseline_gate", "iteration_started", "agent_finished", "gate", "incident",
    "rolled_back", "rate_limited", "steering", "receipt", "warning", "iteration_interrupted", "uncommitted_included",
}
_STYLE = {"incident": "bold red", "warning": "bold yellow", "rolled_back": "yellow", "run_stopped": "bold",
          "rate_limited": "yellow", "uncommitted_included": "yellow"}


class TerminalReporter:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.started = time.monotonic()
        self.iteration: int | None = None
        self.plan_item = ""
        self.spend = "0"
        self.gates: dict[str, str] = {}
        self._status: Status | None = None

    def report(self, kind: str, message: str, data: Mapping[str, Any]) -> None:
        self._track(kind, data)
        if kind in _LINE_KINDS:
            prefix = f"[{self.iteration}] " if self.iteration and kind != "run_stopped" else ""
            self.console.print(f"{prefix}{message}", style=_STYLE.get(kind, ""), markup=False)
        if kind == "run_stopped":
            self._stop_status()
        else:
            self._update_status(message if kind.startswith("agent_") else None)

    def _track(self, kind: str, data: Mapping[str, Any]) -> None:
        if data.get("iteration"):
            self.iteration = int(data["iteration"])
        if kind == "iteration_started":
            self.plan_item = str(data.get("plan_item") or "")
        if kind == "gate":
            self.gates[str(data.get("gate"))] = str(data.get("status"))
        if "spend_usd" in data:
            self.spend = str(data["spend_usd"])

    def _update_status(self, activity: str | None) -> None:
        if not self.console.is_terminal:
            return
        elapsed = int(time.monotonic() - self.started)
        gates = " ".join(f"{k}:{v.split(' ')[0]}" for k, v in self.gates.items()) or "-"
        text = (f"iteration {self.iteration or '-'} | {self.plan_item[:40] or '-'} | "
                f"{elapsed // 60}m{elapsed % 60:02d}s | ${float(self.spend):.4f} | gates {gates}")
        if activity:
            text += f" | {activity[:60]}"
        if self._status is None:
            self._status = self.console.status(text)
            self._status.start()
        else:
            self._status.update(text)

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
