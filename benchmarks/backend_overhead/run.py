"""Backend overhead benchmark: `python benchmarks/backend_overhead/run.py [--turns 500] [--chars 200000]`.

1. Built-in agent turn overhead: the time from a model response arriving to the next model request
   being sent, minus the time spent executing tools. The model is an in-process `FunctionModel` that
   timestamps every call and always asks for one cheap tool (`list_dir`); tool execution is timed by
   wrapping the loop's `run_tool`. What is left is onloop's own work per turn: recording usage and cost,
   writing and flushing the JSON-lines event log, building the next request. Target: under 5 ms.
2. Stream parsing throughput: one large streamed answer from the fake model server over real HTTP on
   127.0.0.1, parsed by onloop's OpenAI-compatible and Anthropic models (through their SDKs), in SSE
   events per second (and the JSON, non-streaming path for comparison).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from onloop.agent import loop as agent_loop
from onloop.agent.loop import AgentOptions, run_agent
from onloop.backends.base import AgentRequest, AgentStatus
from onloop.models.base import Message, ModelRequest, ModelResponse, ToolCall
from onloop.models.config import ModelConfig
from onloop.process import NoSandbox
from onloop.testing import _fake_wire as wire
from onloop.testing.fake_model_server import FakeModelServer, Turn
from onloop.testing.models import FunctionModel
from onloop.usage import Cost, Usage


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def agent_overhead(turns: int) -> dict[str, float]:
    marks: list[tuple[float, float]] = []  # (request sent, response returned) per call
    tool_time: list[float] = []

    def model_fn(request: ModelRequest) -> ModelResponse:
        sent = time.perf_counter()
        response = ModelResponse(text="", tool_calls=(ToolCall(f"c{len(marks)}", "list_dir", {"path": "."}),),
                                 usage=Usage(1000, 50), cost=Cost.zero(), model="bench")
        marks.append((sent, time.perf_counter()))
        return response

    real_run_tool = getattr(agent_loop, "run_tool")  # noqa: B009 - the loop's own binding, swapped below

    def timed_run_tool(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return real_run_tool(*args, **kwargs)
        finally:
            tool_time.append(time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        worktree = root / "repo"
        worktree.mkdir()
        subprocess.run(["git", "init", "-q", str(worktree)], check=True)
        (worktree / "README.md").write_text("# bench\n")
        (root / "scratch").mkdir()
        request = AgentRequest(prompt="benchmark", worktree=worktree, log_path=root / "agent.jsonl",
                               scratch_dir=root / "scratch", sandbox=NoSandbox(), timeout=3600)
        setattr(agent_loop, "run_tool", timed_run_tool)  # noqa: B010 - time tools apart from the loop
        try:
            result = run_agent(FunctionModel(model_fn), request, options=AgentOptions(max_turns=turns + 1))
        finally:
            setattr(agent_loop, "run_tool", real_run_tool)  # noqa: B010
    assert result.status is AgentStatus.MAX_TURNS, result
    gaps = [(marks[i + 1][0] - marks[i][1] - tool_time[i]) * 1000 for i in range(turns)]
    return {"median_ms": statistics.median(gaps), "p95_ms": percentile(gaps, 0.95), "max_ms": max(gaps),
            "tool_median_ms": statistics.median(tool_time) * 1000}


def stream_throughput(provider: str, chars: int, stream: bool) -> dict[str, float]:
    text = ("lorem ipsum dolor sit amet " * (chars // 27 + 1))[:chars]
    turn = Turn(text=text, usage=Usage(10, chars // 4), chunk_chars=16)
    events = len(list(wire.chat_events(turn, "m", "x", True) if provider == "openai"
                      else wire.messages_events(turn, "m", "x")))
    with FakeModelServer([turn]) as server:
        base_url = server.openai_base_url if provider == "openai" else server.url
        config = ModelConfig(provider=provider, model="bench", base_url=base_url, stream=stream, timeout=120)
        from onloop.models import create_model

        model = create_model(config)
        request = ModelRequest(messages=(Message("user", "go"),))
        started = time.perf_counter()
        response = model.complete(request)
        elapsed = time.perf_counter() - started
    assert response.text == text
    return {"events": events if stream else 1, "seconds": elapsed,
            "events_per_s": (events if stream else 1) / elapsed, "mb_per_s": len(text) / elapsed / 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--chars", type=int, default=200_000)
    args = parser.parse_args(argv)

    overhead = agent_overhead(args.turns)
    print(f"\nBuilt-in agent: overhead per turn over {args.turns} turns (tool execution excluded)")
    print(f"{'median ms':>10} {'p95 ms':>10} {'max ms':>10} {'tool median ms':>15}   target < 5 ms")
    print(f"{overhead['median_ms']:>10.3f} {overhead['p95_ms']:>10.3f} {overhead['max_ms']:>10.3f} "
          f"{overhead['tool_median_ms']:>15.3f}   {'OK' if overhead['p95_ms'] < 5 else 'OVER TARGET'}")

    print(f"\nStream parsing: one answer of {args.chars} characters (16 per delta) from the fake server over HTTP")
    print(f"{'client':<22} {'events':>8} {'seconds':>9} {'events/s':>11} {'MB/s':>7}")
    for provider, stream in (("openai", True), ("anthropic", True), ("openai", False), ("anthropic", False)):
        try:
            row = stream_throughput(provider, args.chars, stream)
        except Exception as exc:  # a missing optional SDK: say so in the table, keep the other rows
            print(f"{provider + (' SSE' if stream else ' JSON'):<22} skipped: {exc}")
            continue
        print(f"{provider + (' SSE' if stream else ' JSON'):<22} {row['events']:>8} {row['seconds']:>9.3f} "
              f"{row['events_per_s']:>11.0f} {row['mb_per_s']:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
