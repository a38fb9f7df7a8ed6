"""The built-in agent's run log: one JSON line per event, written as it happens.

Each line is `{"ts", "kind", "summary", "data"}` with the kinds of `AgentEvent` (system, message,
tool_call, tool_result, usage, error, rate_limit, result). Lines are flushed one by one, so a crash of
the agent or of onloop (even `kill -9`) leaves a readable partial transcript, and `parse_log` rebuilds
usage and cost from the `usage` lines alone: that is what `--resume` needs.

Cost arithmetic lives in `CostTally`, used both live and by `parse_log`, so both agree to the cent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from onloop.backends.base import AgentEvent, AgentResult, AgentStatus, EventSink
from onloop.clock import Clock, utc_iso
from onloop.usage import Cost, CostSource, Usage


@dataclass
class CostTally:
    """Usage and cost summed over calls. Cost is UNKNOWN if any call's was, its amount then a lower bound."""

    usage: Usage = Usage()
    known: Decimal = Decimal("0")
    sources: set[CostSource] = field(default_factory=set)

    def add(self, usage: Usage, cost: Cost) -> None:
        self.usage = self.usage + usage
        self.sources.add(cost.source)
        if cost.amount is not None:
            self.known += cost.amount

    def cost(self) -> Cost:
        if not self.sources or self.sources == {CostSource.UNKNOWN}:
            return Cost.unknown() if self.sources else Cost.zero()
        if CostSource.UNKNOWN in self.sources:
            return Cost(self.known, CostSource.UNKNOWN)
        if self.sources == {CostSource.REPORTED}:
            return Cost(self.known, CostSource.REPORTED)
        return Cost(self.known, CostSource.PRICE_TABLE)


def usage_data(usage: Usage, cost: Cost) -> dict[str, Any]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cached_input_tokens": usage.cached_input_tokens,
            "cost_usd": None if cost.amount is None else str(cost.amount), "cost_source": cost.source.value}


class EventLog:
    """Writes events to the log file (flushed per line) and hands them to the sink."""

    def __init__(self, path: Path, sink: EventSink | None, clock: Clock) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._sink = sink
        self._clock = clock
        self.count = 0

    def emit(self, kind: str, summary: str, data: dict[str, Any] | None = None) -> None:
        event = AgentEvent(kind, summary, data or {})
        record = {"ts": utc_iso(self._clock.now()), "kind": kind, "summary": summary, "data": event.data}
        self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()
        self.count += 1
        if self._sink is not None:
            self._sink(event)

    def close(self) -> None:
        self._file.close()


def parse_log(path: Path) -> AgentResult:
    """Rebuild the result from a run log, possibly cut off mid-line by a crash (status CRASHED then)."""
    tally = CostTally()
    count = 0
    final: dict[str, Any] | None = None
    model: str | None = None
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line of a killed run may be half written
        count += 1
        data = record.get("data") or {}
        if record.get("kind") == "usage":
            tally.add(_usage_of(data), _cost_of(data))
            model = data.get("model") or model
        elif record.get("kind") == "result":
            final = data
    return _result(final, tally, count, path, model)


def _usage_of(data: dict[str, Any]) -> Usage:
    return Usage(int(data.get("input_tokens", 0)), int(data.get("output_tokens", 0)),
                 int(data.get("cached_input_tokens", 0)))


def _cost_of(data: dict[str, Any]) -> Cost:
    raw = data.get("cost_usd")
    source = CostSource(data.get("cost_source", CostSource.UNKNOWN.value))
    return Cost(Decimal(raw) if raw is not None else None, source)


def _result(final: dict[str, Any] | None, tally: CostTally, count: int, path: Path, model: str | None) -> AgentResult:
    if final is None:
        return AgentResult(AgentStatus.CRASHED, events=count, usage=tally.usage, cost=tally.cost(),
                           raw_log_path=path, model=model, error="the log ends without a result")
    reset = final.get("rate_limit_reset")
    return AgentResult(
        AgentStatus(final.get("status", AgentStatus.CRASHED.value)), final_message=final.get("final_message", ""),
        events=count, usage=tally.usage, cost=tally.cost(), raw_log_path=path, model=model,
        error=final.get("error"), rate_limit_reset=datetime.fromisoformat(reset) if reset else None,
    )
