"""What `scan_worktree` costs on a plain tree: the loop runs it after every iteration.

Builds a tree of N small files (default 5,000, in 50 directories of 100, plus a little nesting) in a
temp dir, scans it R times and prints the median and p95 wall time. Target: a few tens of ms for
5,000 files. Nothing here is asserted; the numbers go into the report.

    .venv/bin/python benchmarks/worktree_scan/run.py [--files 5000] [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from onloop.policy.worktree_scan import scan_worktree


def build(root: Path, files: int, per_dir: int = 100) -> None:
    """`files` files of a few bytes, spread over directories two levels deep."""
    for i in range(files):
        folder = root / f"pkg{i // per_dir // 10}" / f"mod{i // per_dir}"
        if i % per_dir == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file_{i}.py").write_text("x = 1\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="onloop-scan-bench-") as scratch:
        root = Path(scratch)
        build(root, args.files)
        scan_worktree(root, max_file_bytes=1_000_000)  # warm the dentry cache, as a second scan would be
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            findings = scan_worktree(root, max_file_bytes=1_000_000)
            times.append((time.perf_counter() - start) * 1000)
        if findings:
            raise SystemExit(f"a plain tree gave findings: {findings[:3]}")
    ordered = sorted(times)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    print(f"scan_worktree, {args.files:,} files, {args.runs} runs: median {statistics.median(times):.1f} ms, "
          f"p95 {p95:.1f} ms, min {ordered[0]:.1f} ms")


if __name__ == "__main__":
    main()
