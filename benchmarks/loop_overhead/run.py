"""Loop overhead benchmark: `python benchmarks/loop_overhead/run.py [--iterations 100] [--long 1000]`.

What one onloop iteration costs on top of the work itself. The work is the same on both sides: the
scripted agent (`python -m onloop.testing.scripted_agent`, prompt on stdin, one small edit), one trivial
gate (`python3 -c pass`, format "exit"), and a commit.

1. onloop: `start_run` on a fresh repository, the real loop, the real sandbox (bubblewrap around the
   agent and the gate), the real store; the plan keeps one item open so the run ends at max_iterations.
2. bare: a bash `for` loop in a clone of the same repository doing the same steps by hand, no sandbox,
   no audit, no receipts.

Reported: seconds per iteration of each, the ratio onloop/bare (target <= 1.5) and the absolute overhead
in ms; a cProfile of a short onloop run (top cumulative costs, and the time in child processes by
command, which is where an iteration's time goes); and the RSS of the onloop process sampled at every
receipt, after N iterations versus after `--long` iterations (target: flat, under 10% growth).

3. The sealed checkout on a repository of `--files` files (default 5,000): per iteration, one file
   changed and one added and committed as a checkpoint, then what onloop does before its gates: the
   gate's tree (harness from the base), the reset of the reused sealed checkout after a gate that left
   files behind, and the -x clean of the agent's worktree. Against the naive way measured in the same
   run (a fresh `git worktree add --detach` per iteration). Target: under 100 ms per iteration.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CALC = "def add(a, b):\n    return a + b\n"
PLAN = "# Plan\n\n- [ ] keep going (never closed: the run ends at max_iterations)\n"
GATE = '[gates.trivial]\ncommand = ["python3", "-c", "pass"]\ntimeout = "60s"\nformat = "exit"\n'


def _env(home: Path) -> None:
    """Isolated onloop state and git identity, as the test suite does; no real model can be called."""
    os.environ["ONLOOP_HOME"] = str(home / "onloop-home")
    os.environ["ONLOOP_NO_REAL_CALLS"] = "1"
    os.environ["GIT_CONFIG_GLOBAL"] = str(home / "gitconfig")
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
    (home / "gitconfig").write_text("[user]\n\tname = bench\n\temail = bench@onloop.invalid\n"
                                    "[init]\n\tdefaultBranch = main\n")


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_repo(root: Path, iterations: int) -> tuple[Path, Path]:
    """A repository with onloop.toml, a plan that never closes, and the scenario (one append per iteration)."""
    scenario = root / "scenario.json"
    step = {"message": "appended a line", "edit": [{"path": "notes.txt", "append": "one more line\n"}],
            "usage": {"input_tokens": 1000, "output_tokens": 200}, "cost_usd": "0"}
    scenario.write_text(json.dumps({"iteration": [], "default": step}))
    repo = root / "repo"
    repo.mkdir()
    (repo / "calc.py").write_text(CALC)
    (repo / "IMPLEMENTATION_PLAN.md").write_text(PLAN)
    (repo / ".gitignore").write_text("__pycache__/\n")
    unbounded = "unbounded = true\n" if iterations > 1000 else ""
    (repo / "onloop.toml").write_text(
        f'[run]\nbackend = "scripted"\nmax_iterations = {iterations}\nmax_time = "24h"\nbudget_usd = "1000"\n'
        f"no_progress_limit = {iterations + 1}\nstuck_limit = {iterations + 1}\n{unbounded}\n"
        f'[backends.scripted]\nkind = "scripted"\nscenario = "{scenario}"\n\n{GATE}')
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "initial")
    return repo, scenario


class RssSampler:
    """A Reporter that samples the process's resident set size at every receipt (once per iteration)."""

    def __init__(self) -> None:
        self.samples: list[tuple[int, int]] = []  # (iteration, RSS in KiB)

    def report(self, kind: str, message: str, data: Mapping[str, Any]) -> None:
        if kind == "receipt":
            self.samples.append((int(data.get("iteration") or 0), _rss_kib()))


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu() -> tuple[float, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def run_onloop(root: Path, iterations: int, reporter: Any = None) -> dict[str, Any]:
    from onloop.loop.api import start_run
    from onloop.store.db import Database

    repo, _ = make_repo(root, iterations)
    db = Database.open_default()
    cpu_before = _cpu()
    started = time.perf_counter()
    outcome = start_run(repo, db=db, reporter=reporter)
    total = time.perf_counter() - started
    own_cpu = _cpu()[0] - cpu_before[0]
    walls = [r[0] for r in db.conn.execute("SELECT wall_seconds FROM iterations WHERE run_id = ?", (outcome.run_id,))]
    assert outcome.iterations == iterations, outcome
    return {"reason": outcome.reason.value, "iterations": outcome.iterations, "total_s": total,
            "per_iteration_s": total / iterations, "receipt_wall_mean_s": sum(walls) / len(walls),
            "own_cpu_ms_per_iteration": own_cpu / iterations * 1000}


BARE = r"""
set -e
cd "$REPO"
for i in $(seq 1 "$N"); do
  ONLOOP_ITERATION=$i ONLOOP_ATTEMPT=1 "$PY" -m onloop.testing.scripted_agent --scenario "$SCENARIO" \
      < "$PROMPT" > "$LOGS/agent-$i.jsonl"
  python3 -c pass > "$LOGS/gate-$i.log" 2>&1
  git add -A && git commit -qm "iteration $i"
done
"""


def run_bare(root: Path, iterations: int) -> dict[str, Any]:
    repo, scenario = make_repo(root, iterations)
    logs = root / "bare-logs"
    logs.mkdir()
    prompt = root / "prompt.txt"
    prompt.write_text("Work the plan.\n" * 100)  # about the size of onloop's assembled context
    env = {**os.environ, "REPO": str(repo), "N": str(iterations), "PY": sys.executable,
           "SCENARIO": str(scenario), "PROMPT": str(prompt), "LOGS": str(logs)}
    started = time.perf_counter()
    subprocess.run(["bash", "-c", BARE], env=env, check=True)
    total = time.perf_counter() - started
    return {"total_s": total, "per_iteration_s": total / iterations}


def profile_onloop(root: Path, iterations: int, top: int) -> dict[str, Any]:
    """cProfile of a short run, plus wall time spent in child processes grouped by command."""
    children = _patch_popen_timing()
    profiler = cProfile.Profile()
    profiler.enable()
    result = run_onloop(root, iterations)
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("cumulative").print_stats(r"onloop|subprocess|sqlite", top)
    stats.sort_stats("tottime").print_stats(10)
    per_iteration = {k: (v[0] / iterations, v[1] / iterations * 1000) for k, v in children.items()}
    return {"run": result, "cprofile": stream.getvalue(), "children": per_iteration}


def _patch_popen_timing() -> dict[str, list[float]]:
    """Time every child process from spawn to reaped, keyed by a short name for its command."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # name -> [count, seconds]
    original_init, original_wait = subprocess.Popen.__init__, subprocess.Popen.wait

    def init(self: subprocess.Popen[Any], args: Any, *a: Any, **k: Any) -> None:
        self._bench_start = time.perf_counter()  # type: ignore[attr-defined]
        self._bench_name = _command_name(args)  # type: ignore[attr-defined]
        original_init(self, args, *a, **k)

    def wait(self: subprocess.Popen[Any], timeout: float | None = None) -> int:
        code = original_wait(self, timeout)
        if not getattr(self, "_bench_done", False) and hasattr(self, "_bench_start"):
            self._bench_done = True  # type: ignore[attr-defined]
            entry = totals[self._bench_name]  # type: ignore[attr-defined]
            entry[0] += 1
            entry[1] += time.perf_counter() - self._bench_start
        return code

    subprocess.Popen.__init__ = init  # type: ignore[method-assign]
    subprocess.Popen.wait = wait  # type: ignore[method-assign]
    return totals


def _command_name(args: Any) -> str:
    argv = [str(a) for a in (args if isinstance(args, list | tuple) else [args])]
    if "bwrap" in argv[0] or (argv[0] == "/bin/sh" and any("bwrap" in a for a in argv)):
        inner = " ".join(argv)
        return "bwrap: scripted agent" if "scripted_agent" in inner else "bwrap: gate"
    if Path(argv[0]).name == "git":
        words = [a for a in argv[1:] if not a.startswith("-") and "=" not in a and "/" not in a]
        return f"git {words[0] if words else '?'}"
    return Path(argv[0]).name


def memory_growth(root: Path, short: int, long: int) -> dict[str, Any]:
    sampler = RssSampler()
    result = run_onloop(root, long, reporter=sampler)
    by_iteration = dict(sampler.samples)
    at_short, at_long = by_iteration[short], by_iteration[long]
    return {"run": result, "rss_kib_at": {short: at_short, long: at_long},
            "growth_pct": round(100 * (at_long - at_short) / at_short, 2),
            "rss_kib_first": sampler.samples[0][1]}


def compare(root: Path, iterations: int, rounds: int) -> dict[str, list[dict[str, Any]]]:
    """Alternate bare and onloop (bare, onloop, onloop, bare, ...) so drifting machine load hits both."""
    results: dict[str, list[dict[str, Any]]] = {"bare": [], "onloop": []}
    order = [("bare", run_bare), ("onloop", run_onloop)]
    for round_number in range(rounds):
        for name, fn in order if round_number % 2 == 0 else order[::-1]:
            folder = root / f"{name}-{round_number}"
            folder.mkdir()
            results[name].append(fn(folder, iterations))
            print(f"round {round_number + 1} {name}: {results[name][-1]['per_iteration_s'] * 1000:.1f} ms/iteration",
                  flush=True)
    bare = statistics.mean(r["per_iteration_s"] for r in results["bare"])
    onloop = statistics.mean(r["per_iteration_s"] for r in results["onloop"])
    print(f"bare {bare * 1000:.1f} ms/iteration, onloop {onloop * 1000:.1f} ms/iteration ({iterations} iterations x "
          f"{rounds} rounds): ratio onloop/bare {onloop / bare:.2f} (target <= 1.5), overhead "
          f"{(onloop - bare) * 1000:.1f} ms/iteration", flush=True)
    return results


def _many_files(repo: Path, files: int) -> None:
    for i in range(files):
        folder = repo / f"pkg{i // 1000}" / f"mod{i // 100}"
        if i % 100 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file_{i}.py").write_text(f"X = {i}\n")
    (repo / "tests").mkdir()
    (repo / "tests" / "conftest.py").write_text("# harness\n")
    (repo / ".gitignore").write_text("__pycache__/\n")


def sealed_checkout_cost(root: Path, files: int, iterations: int) -> dict[str, float]:
    """Median ms per iteration of each step before the gates, and of the naive fresh checkout."""
    from onloop.gates.harness import Harness, gate_tree
    from onloop.gates.sealed import SealedCheckout
    from onloop.workspace import branch_name, clean_untracked

    repo = root / "big"
    repo.mkdir()
    _many_files(repo, files)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "initial")
    base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    worktree = root / "big-worktree"
    _git(repo, "worktree", "add", "-q", "-b", branch_name("bench"), str(worktree), base)
    sealed = SealedCheckout(repo / ".git", root / "sealed")
    sealed.prepare(base)  # the first checkout of a run, paid once
    times: dict[str, list[float]] = defaultdict(list)
    for i in range(iterations):
        (worktree / "pkg0" / "mod0" / "file_0.py").write_text(f"X = {i}\n")
        (worktree / f"new_{i}.py").write_text("Y = 1\n")
        (worktree / "__pycache__").mkdir(exist_ok=True)
        (worktree / "__pycache__" / "junk.pyc").write_bytes(b"x" * 100)
        _git(worktree, "add", "-A")
        _git(worktree, "commit", "-qm", f"checkpoint {i}")
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=worktree, capture_output=True, text=True).stdout.strip()
        started = time.perf_counter()
        clean_untracked(worktree, "bench", scanned=True)  # as the loop calls it, right after its scan
        times["clean the agent's worktree (-x)"].append(time.perf_counter() - started)
        started = time.perf_counter()
        tree = gate_tree(str(repo / ".git"), base, head, Harness())
        times["the gate's tree (harness from base)"].append(time.perf_counter() - started)
        # What the previous gate left: caches, a rewritten file, an untracked file.
        (sealed.root / ".pytest_cache").mkdir(exist_ok=True)
        (sealed.root / ".pytest_cache" / "v").write_text("cache")
        (sealed.root / "pkg1" / "mod10" / "file_1000.py").write_text("tampered\n")
        started = time.perf_counter()
        sealed.prepare(tree.tree)
        times["reset of the sealed checkout"].append(time.perf_counter() - started)
        fresh = root / f"fresh-{i}"
        started = time.perf_counter()
        _git(repo, "worktree", "add", "-q", "--detach", str(fresh), head)
        times["naive: fresh git worktree add"].append(time.perf_counter() - started)
        _git(repo, "worktree", "remove", "--force", str(fresh))
    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    sealed_total = sum(v for k, v in medians.items() if not k.startswith("naive"))
    print(f"\nsealed checkout on {files:,} files, {iterations} iterations (median ms per iteration):")
    for name, ms in medians.items():
        print(f"  {name:<40} {ms:8.1f}")
    naive = medians["naive: fresh git worktree add"]
    sealed_only = medians["the gate's tree (harness from base)"] + medians["reset of the sealed checkout"]
    print(f"  onloop before its gates, in all: {sealed_total:.1f} ms (target < 100 ms); tree + reset: "
          f"{sealed_only:.1f} ms, {sealed_only / naive:.2f} of a fresh worktree's cost")
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--profile-iterations", type=int, default=20)
    parser.add_argument("--long", type=int, default=1000, help="iterations for the memory check (0: skip)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=2, help="alternating bare/onloop rounds (machine noise)")
    parser.add_argument("--files", type=int, default=5000, help="files of the sealed-checkout repository")
    parser.add_argument("--sealed-iterations", type=int, default=20)
    parser.add_argument("--only-sealed", action="store_true", help="measure only the sealed checkout")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="onloop-bench-") as tmp:
        root = Path(tmp)
        _env(root)
        sealed_checkout_cost(root, args.files, args.sealed_iterations)
        if args.only_sealed:
            return 0
        results = compare(root, args.iterations, args.rounds)
        own = statistics.mean(r["own_cpu_ms_per_iteration"] for r in results["onloop"])
        print(f"onloop's own CPU time (the orchestrator process, children excluded): {own:.1f} ms/iteration")
        (root / "profile").mkdir()
        prof = profile_onloop(root / "profile", args.profile_iterations, args.top)
        print(f"\nchild processes per onloop iteration (count, ms), {args.profile_iterations} iterations profiled:")
        for name, (count, ms) in sorted(prof["children"].items(), key=lambda kv: -kv[1][1]):
            print(f"  {name:<28} {count:5.1f}  {ms:8.1f}")
        print("\ncProfile, top cumulative (onloop, subprocess, sqlite):")
        print(prof["cprofile"])
        if args.long:
            (root / "memory").mkdir()
            mem = memory_growth(root / "memory", args.iterations, args.long)
            print(f"RSS after {args.iterations} iterations: {mem['rss_kib_at'][args.iterations]} KiB; after "
                  f"{args.long}: {mem['rss_kib_at'][args.long]} KiB; growth {mem['growth_pct']}% (target < 10%); "
                  f"{mem['run']['per_iteration_s'] * 1000:.1f} ms/iteration over the long run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
