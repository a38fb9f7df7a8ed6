"""Profiler output condensed to the top functions by self and total time.

A performance gate (or an agent asked to make something faster) needs "where does the time go" in ten
lines, not 33,000 lines of profiler XML. Three inputs:

- **speedscope JSON** (`py-spy record --format speedscope`, and many other profilers): `shared.frames`
  plus `profiles`, either `sampled` (`samples` are stacks of frame indices, root first, with
  `weights`) or `evented` (open/close events with `at` times).
- **`perf script` text**: with call chains (`perf record -g`), one block per sample, a header line then
  one indented line per frame, leaf first (`7f12ab func+0x1c (/usr/lib/x.so)`), blocks separated by a
  blank line; without (`perf record` alone), one line per sample, the leaf frame at the end of the
  header. Headers are told by their shape (`comm pid [cpu] time: [period] event:`), not by indentation:
  perf right-aligns the command name. Each sample weighs 1.
- **Instruments / `xctrace export` XML** of a `time-profile` table: one `<row>` per sample with a
  `<weight>` (nanoseconds) and a `<backtrace>` of `<frame name=...>` (leaf first). Elements are written
  once with `id="N"` and later only as `ref="N"`, so every reference is resolved against what was
  defined before it. The format was taken from a description of real exports (no real export was
  available to test against; the test sample is built from that description).

Time is counted by function (name and file), never by source line: py-spy gives one frame per line
(`spread (app.py:4)`, `spread (app.py:7)`), and a function whose time is spread over many lines must
rank by its whole share, above one concentrated on a single line. The lines are kept as detail: each
function's busiest lines by self time. Self time goes to the leaf frame of a sample; total time to every
distinct function on its stack (a recursive function is counted once per sample, so totals never
exceed 100%).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from io import StringIO
from typing import Any

_PERF_FRAME = re.compile(r"^\s+(?:[0-9a-fA-F]+\s+)?(?P<sym>.+?)(?:\+0x[0-9a-fA-F]+)?(?:\s+\((?P<dso>[^)]*)\))?$")
# `comm pid[/tid] [cpu] time: [period] event[:modifiers]:` and, without call chains, the leaf frame.
_PERF_HEADER = re.compile(r"^\s*\S.*?\s\d+(?:/\d+)?\s+(?:\[\d+\]\s+)?\d+\.\d+:\s+(?:\d+\s+)?[\w.-]+(?::[\w]*)*:"
                          r"(?P<leaf>\s+[0-9a-fA-F]+\s+\S.*)?\s*$")
_LINES_SHOWN = 3

# A frame: the function (name and file) and the source line within it ("" when the profiler has none).
Frame = tuple[str, str]


@dataclass(frozen=True, slots=True)
class FunctionTime:
    name: str
    self_weight: float
    total_weight: float
    lines: tuple[tuple[str, float], ...] = ()  # its busiest source lines by self time, when known


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    source: str  # "speedscope", "perf", "xctrace"
    samples: int
    total_weight: float
    unit: str
    by_self: tuple[FunctionTime, ...]
    by_total: tuple[FunctionTime, ...]


def detect_profile_format(text: str) -> str | None:
    head = text.lstrip()[:3000]
    if head.startswith("{") and "speedscope" in head and '"profiles"' in text:
        return "speedscope"
    if head.startswith("<?xml") or head.startswith("<trace-query-result"):
        return "xctrace" if "<trace-query-result" in head else None
    if any(_PERF_HEADER.match(line) for line in head.splitlines()[:20]):
        return "perf"
    return None


def summarize(text: str, fmt: str, *, top: int = 10) -> ProfileSummary:
    readers = {"speedscope": _speedscope, "perf": _perf_script, "xctrace": _xctrace}
    source, unit, stacks = readers[fmt](text)
    return _summary(source, unit, stacks, top)


def render(summary: ProfileSummary) -> str:
    total = summary.total_weight or 1.0
    overall = _amount(summary.total_weight, summary.unit)
    lines = [f"{summary.source} profile: {summary.samples} samples, total {overall}"]
    for title, rows, attr in (("self", summary.by_self, "self_weight"), ("total", summary.by_total, "total_weight")):
        lines.append(f"Top {len(rows)} by {title} time:")
        for row in rows:
            weight = float(getattr(row, attr))
            lines.append(f"  {100 * weight / total:5.1f}%  {_amount(weight, summary.unit):>10}  {row.name}")
            if title == "self" and row.lines:
                spots = ", ".join(f"{line} {100 * w / total:.1f}%" for line, w in row.lines)
                lines.append(f"{'':20}lines: {spots}")
    return "\n".join(lines)


def _amount(weight: float, unit: str) -> str:
    if unit == "nanoseconds":
        return f"{weight / 1e9:.3f}s"
    if unit == "microseconds":
        return f"{weight / 1e6:.3f}s"
    if unit == "milliseconds":
        return f"{weight / 1e3:.3f}s"
    if unit == "seconds":
        return f"{weight:.3f}s"
    return f"{weight:g} {unit}".strip()


def _summary(source: str, unit: str, stacks: Iterable[tuple[Sequence[Frame], float]], top: int) -> ProfileSummary:
    """`stacks` are (frames leaf first, weight); time is summed by function, lines kept as detail."""
    self_time: defaultdict[str, float] = defaultdict(float)
    total_time: defaultdict[str, float] = defaultdict(float)
    line_time: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    samples = 0
    total = 0.0
    for frames, weight in stacks:
        samples += 1
        total += weight
        if not frames:
            continue
        leaf, line = frames[0]
        self_time[leaf] += weight
        if line:
            line_time[leaf][line] += weight
        for name in {function for function, _ in frames}:
            total_time[name] += weight
    names = set(total_time)

    def busiest(name: str) -> tuple[tuple[str, float], ...]:
        spots: Mapping[str, float] = line_time.get(name, {})
        return tuple(sorted(spots.items(), key=lambda item: (-item[1], item[0]))[:_LINES_SHOWN])

    def rows(counter: defaultdict[str, float]) -> tuple[FunctionTime, ...]:
        ranked = sorted((n for n in names if counter[n] > 0), key=lambda n: (-counter[n], n))[:top]
        return tuple(FunctionTime(n, self_time[n], total_time[n], busiest(n)) for n in ranked)

    return ProfileSummary(source, samples, total, unit, rows(self_time), rows(total_time))


def _frame(frame: dict[str, Any]) -> Frame:
    name = str(frame.get("name", "?"))
    file = frame.get("file")
    line = frame.get("line")
    return (f"{name} ({file})" if file else name), (str(line) if line not in (None, "") else "")


def _speedscope(text: str) -> tuple[str, str, list[tuple[list[Frame], float]]]:
    data = json.loads(text)
    frames = [_frame(f) for f in data.get("shared", {}).get("frames", [])]
    stacks: list[tuple[list[Frame], float]] = []
    unit = "none"
    for profile in data.get("profiles", []):
        unit = str(profile.get("unit", unit))
        if profile.get("type") == "sampled":
            weights = profile.get("weights") or [1] * len(profile.get("samples", []))
            for sample, weight in zip(profile.get("samples", []), weights, strict=False):
                stacks.append(([frames[i] for i in reversed(sample)], float(weight)))
        elif profile.get("type") == "evented":
            stacks.extend(_evented(profile.get("events", []), frames))
    return "speedscope", unit, stacks


def _evented(events: list[dict[str, Any]], frames: list[Frame]) -> list[tuple[list[Frame], float]]:
    stack: list[Frame] = []
    stacks: list[tuple[list[Frame], float]] = []
    last = None
    for event in sorted(events, key=lambda e: float(e["at"])):
        at = float(event["at"])
        if last is not None and stack and at > last:
            stacks.append((list(reversed(stack)), at - last))
        last = at
        if event.get("type") == "O":
            stack.append(frames[event["frame"]])
        elif stack:
            stack.pop()
    return stacks


def _perf_script(text: str) -> tuple[str, str, list[tuple[list[Frame], float]]]:
    stacks: list[tuple[list[Frame], float]] = []
    current: list[Frame] | None = None
    for line in text.splitlines():
        header = _PERF_HEADER.match(line)
        if header:
            if current is not None:
                stacks.append((current, 1.0))
            current = []
            if header["leaf"]:  # recorded without call chains: the one frame is on the header line
                leaf = _perf_frame(header["leaf"])
                stacks.append(([leaf] if leaf else [], 1.0))
                current = None
        elif not line.strip():
            if current is not None:
                stacks.append((current, 1.0))
            current = None
        elif current is not None:
            frame = _perf_frame(line)
            if frame:
                current.append(frame)
    if current is not None:
        stacks.append((current, 1.0))
    return "perf", "samples", stacks


def _perf_frame(line: str) -> Frame | None:
    match = _PERF_FRAME.match(line if line[:1].isspace() else " " + line)
    if not match:
        return None
    dso = (match["dso"] or "").rsplit("/", 1)[-1]
    return (f"{match['sym']} ({dso})" if dso and match["sym"] == "[unknown]" else match["sym"]), ""


def _xctrace(text: str) -> tuple[str, str, list[tuple[list[Frame], float]]]:
    """Resolve id/ref while streaming: only names and numbers are kept, never the XML tree."""
    names: dict[str, str] = {}  # frame id -> name
    backtraces: dict[str, tuple[str, ...]] = {}
    weights: dict[str, float] = {}
    stacks: list[tuple[list[Frame], float]] = []
    for _event, element in ET.iterparse(StringIO(text), events=("end",)):
        tag = element.tag
        if tag == "frame":
            if element.get("id"):
                names[element.get("id", "")] = element.get("name", "?")
        elif tag == "backtrace" and element.get("id"):
            backtraces[element.get("id", "")] = tuple(
                names.get(f.get("id") or f.get("ref") or "", "?") for f in element.findall("frame"))
        elif tag == "weight" and element.get("id"):
            weights[element.get("id", "")] = float(element.text or 0)
        elif tag == "row":
            stacks.append(_xctrace_row(element, backtraces, weights))
            element.clear()
    return "xctrace", "nanoseconds", stacks


def _xctrace_row(row: ET.Element, backtraces: dict[str, tuple[str, ...]],
                 weights: dict[str, float]) -> tuple[list[Frame], float]:
    weight_el = row.find("weight")
    weight = 1.0
    if weight_el is not None:
        key = weight_el.get("id") or weight_el.get("ref") or ""
        weight = weights.get(key, float(weight_el.text or 1))
    trace_el = row.find("backtrace")
    frames: tuple[str, ...] = ()
    if trace_el is not None:
        frames = backtraces.get(trace_el.get("id") or trace_el.get("ref") or "", ())
    return [(name, "") for name in frames], weight
