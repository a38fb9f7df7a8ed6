"""Cutting huge tool results down to what a model needs, without losing them.

A test run can print megabytes; a model needs the start (what ran) and the end (the summary, the last
traceback). The middle is replaced by a marker giving the number of bytes left out and the path of a
file holding the whole output, so the operator (or the model, with `read_file` if the file is in
reach) can still see everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Truncated:
    text: str
    omitted_bytes: int
    full_output: Path | None


def truncate(text: str, max_bytes: int, spill_to: Path) -> Truncated:
    """`text` if it fits in `max_bytes`; otherwise head and tail around a marker, the whole in `spill_to`."""
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return Truncated(text, 0, None)
    spill_to.parent.mkdir(parents=True, exist_ok=True)
    spill_to.write_bytes(data)
    half = max(1, max_bytes // 2)
    head = data[:half].decode("utf-8", "ignore")
    tail = data[-half:].decode("utf-8", "ignore")
    omitted = len(data) - 2 * half
    marker = f"\n[... {omitted} bytes omitted; the full output is in {spill_to} ...]\n"
    return Truncated(head + marker + tail, omitted, spill_to)
