"""Benchmark of `onloop condense`: reduction ratio, ids kept, and throughput against `wc -l`.

Run from the repository root:

    .venv/bin/python benchmarks/condense/run.py
    .venv/bin/python benchmarks/condense/run.py --big 200   # the gate runner's whole parse of a 200 MB log

Inputs: the two real long pytest logs in tests/data/gates (pypa/packaging with an injected bug: 61 and
14 failures) and a generated 100,000-line `pytest -vv` log (mostly PASSED lines, 500 failures from
a few root causes, full failure sections and a short summary). For each input:

- ratio: bytes in / bytes of the condensed text (default budget, 600 tokens);
- ids: the failing ids recovered from the condensed text alone (`parse_failing_ids`) must equal the
  ones a full parse finds (asserted: 100%);
- throughput: reading the file, decoding it and condensing it, in process, best of N runs; and `wc -l`
  on the same file in the same run (a subprocess, best of N; its fork+exec cost is measured on an
  empty file and shown, because on small files it dominates).
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from onloop.gates.condense import condense_file, condense_text, parse_failing_ids  # noqa: E402
from onloop.gates.parsers import GateOutput, parse_gate_output  # noqa: E402

DATA = ROOT / "tests" / "data" / "gates"
RUNS = 15
GENERATED_LINES = 100_000
GENERATED_FAILURES = 500


def generate_log(path: Path, lines: int = GENERATED_LINES, failures: int = GENERATED_FAILURES) -> set[str]:
    """A `pytest -vv --tb=long` log of exactly `lines` lines; returns the failing ids."""
    rng = random.Random(42)
    failing = [f"tests/test_mod{i % 40}.py::TestArith{i % 7}::test_case[{i}-{rng.randint(0, 999)}]"
               for i in range(failures)]
    header = ["=" * 40 + " test session starts " + "=" * 40, "platform linux -- Python 3.11.7, pytest-9.2.0",
              "rootdir: /srv/generated", "collecting ... collected many items", ""]
    sections = ["=" * 45 + " FAILURES " + "=" * 45]
    for number, check_id in enumerate(failing):
        sections.extend(_section(number, check_id))
    summary = ["=" * 40 + " short test summary info " + "=" * 40]
    summary += [f"FAILED {i} - AssertionError: assert {n} == {n + 1}" for n, i in enumerate(failing)]
    passing = lines - len(header) - len(sections) - len(summary) - len(failing) - 1
    summary.append(f"{'=' * 30} {failures} failed, {passing} passed in 12.34s {'=' * 30}")
    progress = [f"tests/test_mod{i % 40}.py::TestThing{i % 13}::test_property_holds[example-{i}] PASSED"
                f"{' ' * 20}[{100 * i // max(passing, 1):3d}%]" for i in range(passing)]
    for check_id in failing:
        progress.insert(rng.randrange(len(progress)), f"{check_id} FAILED{' ' * 20}[ 50%]")
    text = "\n".join([*header, *progress, *sections, *summary]) + "\n"
    assert text.count("\n") == lines, text.count("\n")
    path.write_text(text)
    return set(failing)


def _section(number: int, check_id: str) -> list[str]:
    head = check_id.split("::", 1)[1].replace("::", ".")
    cause = number % 10  # most failures share a few root causes
    message = (f"AssertionError: assert {number} == {number + 1}" if cause < 8
               else f"ZeroDivisionError: division by zero at 0x{number:012x}" if cause < 9
               else f"KeyError: 'key-{number}'")
    where = "src/arith.py:42" if cause < 8 else ("src/arith.py:77" if cause < 9 else f"src/table.py:{number}")
    return [
        f"{'_' * 30} {head} {'_' * 30}", "", f"self = <tests.test_mod.TestArith object at 0x{number:012x}>",
        "", "    def test_case(self, a, b):", "        # the body of the test", "        total = compute(a, b)",
        ">       assert total == expected", f"E       {message}", f"E        +  where {number} = compute(1, 2)",
        "", f"a          = {number}", "b          = 2", f"total      = {number}", "", f"{where}: AssertionError",
    ]


def best_of(fn: Callable[[], object], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def condense_path(path: Path) -> str:
    return condense_file(path).text


def condense_whole(path: Path) -> str:
    return condense_text(path.read_bytes().decode("utf-8", "replace")).text


def measure(path: Path, expected: set[str] | None) -> dict[str, float | int | str]:
    raw = path.read_bytes()
    text = raw.decode("utf-8", "replace")
    if expected is None:  # the real logs: the truth is what a full parse finds
        expected = {c.check_id for c in parse_gate_output(GateOutput("t", 1, False, text)) if c.status.failing}
    condensed = condense_path(path)
    assert condensed == condense_whole(path)  # the mmap tail path gives the very same text
    recovered = set(parse_failing_ids(condensed))
    assert recovered == expected, f"{path.name}: {len(expected - recovered)} ids lost"
    condense_s = best_of(lambda: condense_path(path))
    whole_s = best_of(lambda: condense_whole(path))
    full_s = best_of(lambda: parse_gate_output(GateOutput("t", 1, False, path.read_bytes().decode())), 3)
    wc_s = best_of(lambda: subprocess.run(["wc", "-l", str(path)], check=True, capture_output=True))
    mb = len(raw) / 1e6
    return {
        "file": path.name[:44], "lines": text.count("\n"), "MB": mb, "ids": len(expected), "kept": len(recovered),
        "ratio": len(raw) / len(condensed.encode()), "tokens": (len(condensed) + 3) // 4,
        "condense_MBps": mb / condense_s, "whole_text_MBps": mb / whole_s, "full_parse_MBps": mb / full_s,
        "wc_MBps": mb / wc_s,
        "slower_than_wc": condense_s / wc_s,
    }


_PARSE_IN_CHILD = """
import resource, sys, time
from pathlib import Path
from onloop.gates.parsers import GateOutput, parse_gate_output
from onloop.gates.runner import _read_for_parsing
start = time.perf_counter()
checks = parse_gate_output(GateOutput("t", 1, False, _read_for_parsing(Path(sys.argv[1]))), "pytest")
took = time.perf_counter() - start
failing = sum(1 for c in checks if c.status.failing)
print(len(checks), failing, took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def big(megabytes: int) -> int:
    """The gate runner's parse of a generated `pytest -vv` log of about `megabytes` MB, whole, in a child
    process (its peak RSS is the parse's own), against `wc -l` on the same file."""
    lines = megabytes * 1_000_000 // 100  # the generated progress lines are about 100 bytes each
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big-pytest-vv.log"
        expected = generate_log(path, lines=lines, failures=2000)
        size = path.stat().st_size / 1e6
        done = subprocess.run([sys.executable, "-c", _PARSE_IN_CHILD, str(path)], check=True, capture_output=True,
                              text=True, env={"PYTHONPATH": str(ROOT / "src")})
        checks, failing, took, peak_kib = done.stdout.split()
        wc_s = best_of(lambda: subprocess.run(["wc", "-l", str(path)], check=True, capture_output=True), 3)
    assert int(failing) == len(expected), (failing, len(expected))
    print(f"{size:.0f} MB, {lines:,} lines: {int(checks):,} checks, all {len(expected):,} failing ids found; "
          f"parse {float(took):.1f} s ({size / float(took):.1f} MB/s), wc -l {size / wc_s:.0f} MB/s "
          f"({float(took) / wc_s:.0f}x); peak RSS {int(peak_kib) / 1024:.0f} MB (target < 100 MB)")
    return 0


def main() -> int:
    if "--big" in sys.argv:
        return big(int(sys.argv[sys.argv.index("--big") + 1]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        generated = Path(tmp) / "generated-100k-pytest-vv.log"
        expected = generate_log(generated)
        empty = Path(tmp) / "empty"
        empty.write_bytes(b"")
        spawn = best_of(lambda: subprocess.run(["wc", "-l", str(empty)], check=True, capture_output=True))
        for path in (DATA / "pytest-vv-long-packaging-specifiers.log",
                     DATA / "pytest-vv-long-packaging-property-hypothesis.log"):
            rows.append(measure(path, None))
        rows.append(measure(generated, expected))
    columns = ["file", "lines", "MB", "ids", "kept", "ratio", "tokens", "condense_MBps", "whole_text_MBps",
               "full_parse_MBps",
               "wc_MBps", "slower_than_wc"]
    print(" | ".join(f"{c:>15}" if c != "file" else f"{c:<44}" for c in columns))
    for row in rows:
        cells = []
        for c in columns:
            value = row[c]
            cells.append(f"{value:<44}" if c == "file" else f"{value:>15.2f}" if isinstance(value, float)
                         else f"{value:>15}")
        print(" | ".join(cells))
    print(f"\nwc -l fork+exec on an empty file: {spawn * 1000:.2f} ms (included in wc_MBps).")
    print("ids kept: 100% on every input (asserted). ratio = bytes in / bytes out at the default 600-token budget.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
