"""Profile summaries: speedscope (sampled and evented), perf script, xctrace XML with id/ref."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onloop.gates.condense import condense_text
from onloop.gates.profile import detect_profile_format, render, summarize

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "gates" / "samples"


def read(name: str) -> str:
    return (SAMPLES / name).read_text()


def test_speedscope_sampled_self_and_total() -> None:
    summary = summarize(read("speedscope-sampled.json"), "speedscope", top=3)
    assert summary.samples == 7
    assert summary.total_weight == pytest.approx(1.0)
    assert [(f.name, round(f.self_weight, 3)) for f in summary.by_self] == [
        ("fib (app.py)", 0.4), ("tokenize (lexer.py)", 0.3), ("render (app.py)", 0.2)]
    assert summary.by_self[0].lines == (("40", pytest.approx(0.4)),), "the line is kept as detail"
    # Recursion (fib -> fib -> fib) counts once per sample in total time: totals never exceed 100%.
    totals = {f.name: round(f.total_weight, 3) for f in summary.by_total}
    assert totals["main (app.py)"] == 1.0
    assert all(f.total_weight <= summary.total_weight + 1e-9 for f in summary.by_total)


def test_speedscope_evented() -> None:
    summary = summarize(read("speedscope-evented.json"), "speedscope")
    self_time = {f.name: f.self_weight for f in summary.by_self}
    assert self_time == {"compute": 60.0, "load": 20.0, "main": 20.0}
    assert summary.by_total[0].name == "main" and summary.by_total[0].total_weight == 100.0


def test_perf_script() -> None:
    summary = summarize(read("perf-script.txt"), "perf")
    assert summary.samples == 4
    assert summary.by_self[0].name == "__memmove_avx_unaligned_erms"
    assert summary.by_self[0].self_weight == 2
    names = {f.name for f in summary.by_total}
    assert "[unknown] ([kernel.kallsyms])" in names
    assert not any("+0x" in n for n in names)


def test_xctrace_resolves_id_and_ref() -> None:
    summary = summarize(read("xctrace-time-profile.xml"), "xctrace")
    assert summary.samples == 5
    assert summary.total_weight == 6_000_000  # 1+1+1+2+1 ms, the 2 ms weight defined once and the 1 ms one reused
    self_time = {f.name: f.self_weight for f in summary.by_self}
    # Row 2 reuses backtrace 7 by ref; row 3 builds a new backtrace from frame refs only.
    assert self_time == {"hash_bytes": 2_000_000, "write_output": 2_000_000, "build_index": 1_000_000}
    total = {f.name: f.total_weight for f in summary.by_total}
    assert total["main"] == 5_000_000  # the sentinel row has no backtrace


@pytest.mark.parametrize(("name", "fmt"), [
    ("speedscope-sampled.json", "speedscope"), ("speedscope-evented.json", "speedscope"),
    ("perf-script.txt", "perf"), ("xctrace-time-profile.xml", "xctrace"),
])
def test_detection_and_condense_text(name: str, fmt: str) -> None:
    text = read(name)
    assert detect_profile_format(text) == fmt
    condensed = condense_text(text)
    assert condensed.failing_ids == ()
    assert condensed.text == render(summarize(text, fmt))
    assert "by self time" in condensed.text and "by total time" in condensed.text


def test_big_speedscope_condenses_to_top_n() -> None:
    frames = [{"name": f"fn_{i}", "file": "m.py", "line": i} for i in range(500)]
    samples = [[0, 1 + (i % 499)] for i in range(20_000)]
    text = json.dumps({"$schema": "https://www.speedscope.app/file-format-schema.json", "shared": {"frames": frames},
                       "profiles": [{"type": "sampled", "name": "t", "unit": "seconds", "startValue": 0,
                                     "endValue": 1, "samples": samples, "weights": [0.001] * len(samples)}]})
    out = condense_text(text).text
    assert len(out.splitlines()) == 1 + 2 * 11 + 10, "header, two tables of ten, a line of lines per self row"
    assert len(text) / len(out) > 100


REAL = Path(__file__).parent.parent / "data" / "gates" / "profiles"


def test_a_function_spread_over_many_lines_ranks_by_its_whole_share() -> None:
    # Real py-spy output: `spread` spends ~90% over five lines, `concentrated` ~10% on one line.
    summary = summarize((REAL / "py-spy-speedscope.json").read_text(), "speedscope")

    top = summary.by_self[0]
    assert top.name == "spread (/tmp/prof_target.py)"
    assert top.self_weight / summary.total_weight > 0.8
    assert len(top.lines) == 3 and all(line.isdigit() for line, _ in top.lines), "its busiest lines, as detail"
    assert {f.name for f in summary.by_self} == {"spread (/tmp/prof_target.py)", "concentrated (/tmp/prof_target.py)",
                                                 "concentrated.<locals>.<genexpr> (/tmp/prof_target.py)"}


@pytest.mark.parametrize("capture", ["perf-script-no-callchain.txt", "perf-script-callchain.txt"])
def test_real_perf_script_with_and_without_call_chains(capture: str) -> None:
    text = (REAL / capture).read_text()
    assert detect_profile_format(text) == "perf"

    summary = summarize(text, "perf")

    samples = sum(1 for line in text.splitlines() if "cpu-clock" in line)
    assert summary.samples == samples > 80
    assert summary.by_self[0].self_weight > 10
    assert "_PyEval_EvalFrameDefault" in {f.name for f in summary.by_self}


def test_a_perf_log_is_never_read_as_a_test_report() -> None:
    out = condense_text((REAL / "perf-script-no-callchain.txt").read_text())
    assert out.text.startswith("perf profile: ") and "No failing checks" not in out.text
