"""What the bubblewrap sandbox adds to every gate and action invocation.

Runs trivial commands (`true`, `python3 -c pass`) N times through `onloop.process.run_process`, once
directly (NoSandbox) and once under `BwrapSandbox` with the default policy, and prints the median and
p95 wall time of each plus the added milliseconds per invocation. Target: under 20 ms added.

    .venv/bin/python benchmarks/sandbox_overhead/run.py [--runs 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from onloop.policy.model import Policy
from onloop.policy.sandbox import BwrapSandbox
from onloop.process import NoSandbox, ProcessSpec, Sandbox, run_process

COMMANDS = {"true": ("true",), "python3 -c pass": ("python3", "-c", "pass")}


def measure(spec: ProcessSpec, boxes: dict[str, Sandbox], runs: int) -> dict[str, list[float]]:
    """Wall ms per run for each sandbox, interleaved so that load drift on the machine hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in boxes}
    for _ in range(runs):
        for name, sandbox in boxes.items():
            start = time.perf_counter()
            result = run_process(spec, sandbox)
            times[name].append((time.perf_counter() - start) * 1000)
            if result.exit_code != 0:
                raise SystemExit(f"{spec.argv} failed under {name}: exit {result.exit_code}")
    return times


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="onloop-bench-") as tmp:
        worktree = Path(tmp)
        boxes: dict[str, Sandbox] = {
            "direct": NoSandbox(),
            "bwrap": BwrapSandbox(Policy(), worktree, None),
            "bwrap (no pids cgroup)": BwrapSandbox(Policy(), worktree, None, pids_cgroup_root=None),
        }
        boxes["bwrap"].check()
        header = (f"{'command':<18} {'sandbox':<24} {'median ms':>10} {'p95 ms':>8} {'added med':>10} "
                  f"{'added p95':>10} {'ratio':>6}")
        print(f"{runs} runs each, python {sys.version.split()[0]}")
        print(header)
        print("-" * len(header))
        for label, argv in COMMANDS.items():
            spec = ProcessSpec(argv=argv, cwd=worktree, timeout=30)
            measure(spec, boxes, 5)  # warm the page cache
            times = measure(spec, boxes, runs)
            base_med, base_p95 = statistics.median(times["direct"]), p95(times["direct"])
            for name, values in times.items():
                med, tail = statistics.median(values), p95(values)
                print(f"{label:<18} {name:<24} {med:>10.2f} {tail:>8.2f} {med - base_med:>10.2f} "
                      f"{tail - base_p95:>10.2f} {med / base_med:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
