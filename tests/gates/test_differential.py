"""The differential gate: real subprocesses through run_process with NoSandbox."""

from __future__ import annotations

import sys
from pathlib import Path

from onloop.gates.checks import CheckStatus
from onloop.gates.differential import DiffCase, DiffRun, Normalise, cases_from_files, run_differential

PY = sys.executable


def script(tmp_path: Path, name: str, body: str) -> tuple[str, ...]:
    path = tmp_path / name
    path.write_text(body)
    return (PY, str(path))


REFERENCE = "import sys, json\nfor line in sys.stdin:\n    n = int(line)\n    print(n * 2)\nprint('done')\n"
CANDIDATE_OK = "import sys\nfor line in sys.stdin:\n    print(str(int(line) * 2) + '  ')\nprint('done')\nprint()\n"
CANDIDATE_BAD = (
    "import sys\nfor line in sys.stdin:\n    n = int(line)\n    print(n * 2 if n != 3 else 7)\nprint('done')\n"
)


def inputs(tmp_path: Path) -> list[Path]:
    (tmp_path / "in").mkdir()
    files = []
    for name, numbers in (("a.txt", [1, 2]), ("b.txt", [3, 4]), ("c.txt", list(range(100)))):
        path = tmp_path / "in" / name
        path.write_text("".join(f"{n}\n" for n in numbers))
        files.append(path)
    return files


def test_equivalent_candidate_passes_with_whitespace_rule(tmp_path: Path) -> None:
    run = DiffRun(script(tmp_path, "ref.py", REFERENCE), script(tmp_path, "cand.py", CANDIDATE_OK), tmp_path,
                  normalise=Normalise(strip_whitespace=True))
    checks = run_differential(run, cases_from_files(inputs(tmp_path), tmp_path / "in"))
    assert [(c.check_id, c.status) for c in checks] == [
        ("differential:a.txt", CheckStatus.PASSED), ("differential:b.txt", CheckStatus.PASSED),
        ("differential:c.txt", CheckStatus.PASSED)]
    strict = DiffRun(run.reference, run.candidate, tmp_path)
    assert run_differential(strict, cases_from_files(inputs_again(tmp_path), tmp_path / "in"))[0].status is (
        CheckStatus.FAILED)


def inputs_again(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "in").iterdir())


def test_mismatch_gives_a_capped_unified_diff(tmp_path: Path) -> None:
    run = DiffRun(script(tmp_path, "ref.py", REFERENCE), script(tmp_path, "cand.py", CANDIDATE_BAD), tmp_path,
                  max_diff_lines=6)
    checks = {c.check_id: c for c in run_differential(run, cases_from_files(inputs(tmp_path), tmp_path / "in"))}
    assert checks["differential:a.txt"].status is CheckStatus.PASSED
    bad = checks["differential:b.txt"]
    assert bad.status is CheckStatus.FAILED
    assert bad.message == "output differs from the reference (2 lines differ)"
    assert "-6" in bad.detail and "+7" in bad.detail and bad.detail.startswith("--- reference")
    assert checks["differential:c.txt"].status is CheckStatus.FAILED
    assert len(checks["differential:c.txt"].detail.splitlines()) <= 7


def test_argv_cases_input_placeholder_exit_codes_and_rules(tmp_path: Path) -> None:
    ref = script(tmp_path, "ref.py", (
        "import sys, json, time\nargs = sys.argv[1:]\n"
        "if args[0] == 'fail':\n    sys.exit(3)\n"
        "print(json.dumps({'b': 1, 'a': args[0], 'at': time.time()}))\nprint('z')\nprint('y')\n"))
    cand = script(tmp_path, "cand.py", (
        "import sys, json, time\nargs = sys.argv[1:]\n"
        "print(json.dumps({'a': args[0], 'at': time.time() + 1, 'b': 1}))\nprint('y')\nprint('z')\n"))
    rules = Normalise(replacements=((r'"at": [0-9.]+', '"at": T'),), sort_lines=True, json_canonical=True)
    run = DiffRun(ref, cand, tmp_path, normalise=rules)
    checks = {c.check_id: c for c in run_differential(
        run, [DiffCase("hello", ("hello",)), DiffCase("fail", ("fail",))])}
    assert checks["differential:hello"].status is CheckStatus.PASSED
    assert checks["differential:fail"].status is CheckStatus.FAILED
    assert "exit code 0, reference 3" in checks["differential:fail"].message
    raw = run_differential(DiffRun(ref, cand, tmp_path), [DiffCase("hello", ("hello",))])
    assert raw[0].status is CheckStatus.FAILED  # without the rules the outputs differ


def test_input_placeholder_and_timeout(tmp_path: Path) -> None:
    cat = (PY, "-c", "import sys; print(open(sys.argv[1]).read().upper())", "{input}")
    slow = (PY, "-c", "import time, sys; time.sleep(30)", "{input}")
    files = inputs(tmp_path)[:1]
    assert run_differential(DiffRun(cat, cat, tmp_path), cases_from_files(files))[0].status is CheckStatus.PASSED
    [timed_out] = run_differential(DiffRun(cat, slow, tmp_path, timeout=1.0), cases_from_files(files))
    assert timed_out.status is CheckStatus.ERROR and "candidate timed out" in timed_out.message
