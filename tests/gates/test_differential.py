"""The differential gate: real subprocesses through run_process (NoSandbox, and bubblewrap where it works)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from onloop.errors import SandboxUnavailable
from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.differential import DiffCase, DiffRun, Normalise, cases_from_files, run_differential
from onloop.policy.model import Policy
from onloop.policy.sandbox import BwrapSandbox
from onloop.process import NoSandbox, Sandbox

PY = sys.executable
MIB = 1024 * 1024


def py(code: str, *args: str) -> tuple[str, ...]:
    return (PY, "-c", code, *args)


def writes(data: bytes, exit_code: int = 0) -> tuple[str, ...]:
    """A program that writes exactly `data` (given as a bytes literal) and exits with `exit_code`."""
    return py(f"import sys; sys.stdout.buffer.write({data!r}); sys.exit({exit_code})")


def script(tmp_path: Path, name: str, body: str) -> tuple[str, ...]:
    path = tmp_path / name
    path.write_text(body)
    return (PY, str(path))


def checkouts(tmp_path: Path, files: Mapping[str, str | bytes] | None = None) -> tuple[Path, Path]:
    """Two checkouts (reference, candidate) holding the same input files."""
    sides = (tmp_path / "ref", tmp_path / "cand")
    for side in sides:
        side.mkdir(exist_ok=True)
        for rel, content in (files or {}).items():
            path = side / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
    return sides


def make_run(reference: tuple[str, ...], candidate: tuple[str, ...], tmp_path: Path, **options: Any) -> DiffRun:
    ref_cwd, cand_cwd = checkouts(tmp_path)
    return DiffRun(reference, candidate, ref_cwd, cand_cwd, **options)


def run_cases(run: DiffRun, cases: list[DiffCase], candidate_sandbox: Sandbox | None = None) -> list[CheckResult]:
    return run_differential(run, cases, NoSandbox(), candidate_sandbox or NoSandbox())


def one(run: DiffRun, case: DiffCase | None = None) -> CheckResult:
    [result] = run_cases(run, [case or DiffCase("x")])
    return result


# -- the behaviours of the first version, on the new API -------------------------------------------

REFERENCE = "import sys, json\nfor line in sys.stdin:\n    n = int(line)\n    print(n * 2)\nprint('done')\n"
CANDIDATE_OK = "import sys\nfor line in sys.stdin:\n    print(str(int(line) * 2) + '  ')\nprint('done')\nprint()\n"
CANDIDATE_BAD = (
    "import sys\nfor line in sys.stdin:\n    n = int(line)\n    print(n * 2 if n != 3 else 7)\nprint('done')\n"
)
NUMBERS = {"in/a.txt": "1\n2\n", "in/b.txt": "3\n4\n", "in/c.txt": "".join(f"{n}\n" for n in range(100))}


def test_equivalent_candidate_passes_with_whitespace_rule(tmp_path: Path) -> None:
    ref_cwd, cand_cwd = checkouts(tmp_path, NUMBERS)
    ref, cand = script(tmp_path, "ref.py", REFERENCE), script(tmp_path, "cand.py", CANDIDATE_OK)
    cases = cases_from_files(sorted(NUMBERS))
    run = DiffRun(ref, cand, ref_cwd, cand_cwd, normalise=Normalise(strip_whitespace=True))
    assert [(c.check_id, c.status) for c in run_cases(run, cases)] == [
        ("differential:in/a.txt", CheckStatus.PASSED), ("differential:in/b.txt", CheckStatus.PASSED),
        ("differential:in/c.txt", CheckStatus.PASSED)]
    strict = DiffRun(ref, cand, ref_cwd, cand_cwd)
    assert run_cases(strict, cases)[0].status is CheckStatus.FAILED


def test_mismatch_gives_a_capped_diff_of_the_first_differing_region(tmp_path: Path) -> None:
    ref_cwd, cand_cwd = checkouts(tmp_path, NUMBERS)
    run = DiffRun(script(tmp_path, "ref.py", REFERENCE), script(tmp_path, "cand.py", CANDIDATE_BAD), ref_cwd,
                  cand_cwd, max_diff_lines=6)
    checks = {c.check_id: c for c in run_cases(run, cases_from_files(sorted(NUMBERS)))}
    assert checks["differential:in/a.txt"].status is CheckStatus.PASSED
    bad = checks["differential:in/b.txt"]
    assert bad.status is CheckStatus.FAILED
    assert bad.message == "output differs from the reference (first difference at line 1)"
    assert "-6" in bad.detail and "+7" in bad.detail and bad.detail.startswith("--- reference")
    long = checks["differential:in/c.txt"]
    assert long.status is CheckStatus.FAILED and "first difference at line 4" in long.message
    assert len(long.detail.splitlines()) <= 7 and "[diff cut:" in long.detail
    assert "@@ -2," in long.detail, "the hunk is numbered by the real lines, with two lines of context"


def test_argv_cases_exit_codes_and_rules(tmp_path: Path) -> None:
    ref = script(tmp_path, "ref.py", (
        "import sys, json, time\nargs = sys.argv[1:]\n"
        "if args[0] == 'fail':\n    sys.exit(3)\n"
        "print(json.dumps({'b': 1, 'a': args[0], 'at': time.time()}))\nprint('z')\nprint('y')\n"))
    cand = script(tmp_path, "cand.py", (
        "import sys, json, time\nargs = sys.argv[1:]\n"
        "print(json.dumps({'a': args[0], 'at': time.time() + 1, 'b': 1}))\nprint('y')\nprint('z')\n"))
    rules = Normalise(replacements=((r'"at": [0-9.]+', '"at": T'),), sort_lines=True, json_canonical=True)
    run = make_run(ref, cand, tmp_path, normalise=rules)
    checks = {c.check_id: c for c in run_cases(run, [DiffCase("hello", ("hello",)), DiffCase("fail", ("fail",))])}
    assert checks["differential:hello"].status is CheckStatus.PASSED
    assert checks["differential:fail"].status is CheckStatus.FAILED
    assert "exit code 0, reference 3" in checks["differential:fail"].message
    raw = make_run(ref, cand, tmp_path)
    assert one(raw, DiffCase("hello", ("hello",))).status is CheckStatus.FAILED  # without the rules they differ


def test_candidate_timeout_is_an_error(tmp_path: Path) -> None:
    ref_cwd, cand_cwd = checkouts(tmp_path, {"a.txt": "x\n"})
    cat = py("import sys; print(open(sys.argv[1]).read().upper())", "{input}")
    slow = py("import time; time.sleep(30)", "{input}")
    cases = cases_from_files(["a.txt"])
    assert run_cases(DiffRun(cat, cat, ref_cwd, cand_cwd), cases)[0].status is CheckStatus.PASSED
    [timed_out] = run_cases(DiffRun(cat, slow, ref_cwd, cand_cwd, timeout=1.0), cases)
    assert timed_out.status is CheckStatus.ERROR and "candidate timed out after 1s" in timed_out.message


# -- whole outputs, compared as bytes --------------------------------------------------------------

def big(size: int, tail: str) -> tuple[str, ...]:
    return py(f"import sys; sys.stdout.buffer.write(b'a' * {size}); sys.stdout.buffer.write(b{tail!r})")


def test_outputs_that_differ_only_after_16_mib_do_not_match(tmp_path: Path) -> None:
    result = one(make_run(big(16 * MIB, "X"), big(16 * MIB, "Y"), tmp_path))
    assert result.status is CheckStatus.FAILED and "first difference at line 1" in result.message
    assert "[line cut]" in result.detail and len(result.detail) < 2000, "a huge line is shown cut, not whole"


def test_outputs_that_differ_only_in_the_last_allowed_byte_do_not_match(tmp_path: Path) -> None:
    limit = 1000
    assert one(make_run(big(limit - 1, "X"), big(limit - 1, "Y"), tmp_path, max_output=limit)).status is (
        CheckStatus.FAILED)
    assert one(make_run(big(limit - 1, "X"), big(limit - 1, "X"), tmp_path, max_output=limit)).status is (
        CheckStatus.PASSED), "an output of exactly max_output bytes is compared whole"


def test_equal_multi_megabyte_outputs_match_under_every_rule(tmp_path: Path) -> None:
    lines = py("import sys\nfor i in range(400000):\n    print(f'line {i} at 12:00  ')")
    rules = [Normalise(), Normalise(strip_whitespace=True), Normalise(replacements=((r"\d\d:\d\d", "T"),)),
             Normalise(sort_lines=True)]
    for rule in rules:
        assert one(make_run(lines, lines, tmp_path, normalise=rule)).status is CheckStatus.PASSED, rule
    shifted = py("import sys\nfor i in range(400000):\n    print(f'line {i} at 12:{i % 60:02}  ')")
    masked = Normalise(strip_whitespace=True, replacements=((r"\d\d:\d\d", "T"),))
    assert one(make_run(lines, shifted, tmp_path, normalise=masked)).status is CheckStatus.PASSED
    late = py("import sys\nfor i in range(400000):\n    print(f'line {i} at 12:00  ' if i != 399999 else 'end')")
    result = one(make_run(lines, late, tmp_path, normalise=masked))
    assert result.status is CheckStatus.FAILED and "first difference at line 400000" in result.message
    assert "-line 399999 at T" in result.detail and "+end" in result.detail


def test_different_invalid_utf8_bytes_do_not_match_and_identical_ones_do(tmp_path: Path) -> None:
    different = one(make_run(writes(b"ok \xff\n"), writes(b"ok \xfe\n"), tmp_path, normalise=Normalise(
        strip_whitespace=True)))
    assert different.status is CheckStatus.FAILED
    assert "-ok \\xff" in different.detail and "+ok \\xfe" in different.detail, "the diff keeps them apart"
    assert one(make_run(writes(b"ok \xff\x80\n"), writes(b"ok \xff\x80\n"), tmp_path)).status is CheckStatus.PASSED


def test_with_no_rules_the_comparison_is_exact(tmp_path: Path) -> None:
    assert one(make_run(writes(b"a\n"), writes(b"a"), tmp_path)).status is CheckStatus.FAILED
    assert one(make_run(writes(b"a\r\n"), writes(b"a\n"), tmp_path)).status is CheckStatus.FAILED
    assert one(make_run(writes(b"a\n"), writes(b"a"), tmp_path, normalise=Normalise(
        strip_whitespace=True))).status is CheckStatus.PASSED


# -- a reference that fails is not a candidate mismatch --------------------------------------------

def marker_candidate(tmp_path: Path) -> tuple[tuple[str, ...], Path]:
    marker = tmp_path / "candidate-ran"
    return py(f"open({str(marker)!r}, 'w').write('ran')"), marker


def test_a_reference_killed_by_a_signal_is_reference_failed_and_the_candidate_is_not_run(tmp_path: Path) -> None:
    candidate, marker = marker_candidate(tmp_path)
    crash = py("import os, signal; print('partial', flush=True); os.kill(os.getpid(), signal.SIGSEGV)")
    through_shell = ("/bin/sh", "-c", '"$0" -c "import os; os.kill(os.getpid(), 9)"; exit $?', PY)
    for reference, shown in ((crash, "signal 11 (SIGSEGV) (exit code -11)"),
                             (through_shell, "signal 9 (SIGKILL) (exit code 137)")):
        result = one(make_run(reference, candidate, tmp_path))
        assert result.status is CheckStatus.REFERENCE_FAILED, result
        assert result.check_id == "differential:x"
        assert f"the reference was killed by {shown}" in result.message
        assert "the candidate is not judged on this input" in result.message
    assert not marker.exists()


def test_a_reference_that_times_out_is_reference_failed(tmp_path: Path) -> None:
    candidate, marker = marker_candidate(tmp_path)
    result = one(make_run(py("import time; time.sleep(30)"), candidate, tmp_path, timeout=1.0))
    assert result.status is CheckStatus.REFERENCE_FAILED and "the reference timed out after 1s" in result.message
    assert not marker.exists()


def test_a_reference_that_cannot_execute_is_reference_failed(tmp_path: Path) -> None:
    candidate, marker = marker_candidate(tmp_path)
    not_executable = tmp_path / "ref.sh"
    not_executable.write_text("#!/bin/sh\necho hi\n")
    references = {
        (str(not_executable),): "the reference could not be executed: ",
        ("/bin/sh", "-c", str(not_executable)): "exit code 126: not executable",
        ("/bin/sh", "-c", "no-such-command-anywhere"): "exit code 127: command not found",
    }
    for reference, reason in references.items():
        result = one(make_run(reference, candidate, tmp_path))
        assert result.status is CheckStatus.REFERENCE_FAILED and reason in result.message, result
        assert not result.status.failing
    assert not marker.exists()


def test_a_reference_over_max_output_is_reference_failed(tmp_path: Path) -> None:
    candidate, marker = marker_candidate(tmp_path)
    for reference in (big(2000, ""), py("import sys; sys.stderr.write('e' * 5000)")):
        result = one(make_run(reference, candidate, tmp_path, max_output=1000, name="port"))
        assert result.status is CheckStatus.REFERENCE_FAILED, result
        assert "exceeds gates.port.max_output (1000 bytes)" in result.message
    assert not marker.exists()


def test_an_ordinary_nonzero_exit_of_the_reference_is_behaviour_to_match(tmp_path: Path) -> None:
    grep_like = writes(b"", exit_code=1)
    assert one(make_run(grep_like, writes(b"", exit_code=1), tmp_path)).status is CheckStatus.PASSED
    wrong = one(make_run(grep_like, writes(b""), tmp_path))
    assert wrong.status is CheckStatus.FAILED and wrong.message == "exit code 0, reference 1"
    assert one(make_run(grep_like, writes(b""), tmp_path, compare_exit_code=False)).status is CheckStatus.PASSED


# -- a candidate that cannot be judged, or crashes --------------------------------------------------

def test_a_candidate_over_max_output_is_an_error(tmp_path: Path) -> None:
    result = one(make_run(big(1000, ""), big(1001, ""), tmp_path, max_output=1000, name="port"))
    assert result.status is CheckStatus.ERROR
    assert "output exceeds gates.port.max_output (1000 bytes)" in result.message


def test_a_candidate_that_cannot_execute_is_an_error_and_one_that_crashes_fails(tmp_path: Path) -> None:
    missing = one(make_run(writes(b"1\n"), ("/bin/sh", "-c", "no-such-command-anywhere"), tmp_path))
    assert missing.status is CheckStatus.ERROR and "the candidate could not be executed" in missing.message
    assert "not found" in missing.detail, "the candidate's stderr says why"
    crashed = one(make_run(writes(b"1\n"), py("import os; os.abort()"), tmp_path, compare_exit_code=False))
    assert crashed.status is CheckStatus.FAILED
    assert f"killed by signal {int(signal.SIGABRT)} (SIGABRT)" in crashed.message


# -- inputs: each side's own checkout, or stdin ----------------------------------------------------

def test_input_placeholder_resolves_to_each_sides_own_checkout(tmp_path: Path) -> None:
    ref_cwd, cand_cwd = checkouts(tmp_path, {"cases/a.txt": "same\n"})
    own = py("import os, sys; p = sys.argv[1]; print(p == os.path.join(os.getcwd(), 'cases', 'a.txt'), "
             "open(p).read().strip())", "{input}")
    [result] = run_differential(DiffRun(own, own, ref_cwd, cand_cwd), cases_from_files(["cases/a.txt"]),
                                NoSandbox(), NoSandbox())
    assert result.status is CheckStatus.PASSED
    echo = py("import sys; print(sys.argv[1])", "{input}")
    [paths] = run_cases(DiffRun(echo, echo, ref_cwd, cand_cwd), cases_from_files(["cases/a.txt"]))
    assert f"-{ref_cwd}/cases/a.txt" in paths.detail and f"+{cand_cwd}/cases/a.txt" in paths.detail


def test_without_placeholder_the_reference_checkouts_input_is_fed_on_stdin(tmp_path: Path) -> None:
    ref_cwd, cand_cwd = checkouts(tmp_path, {"a.txt": "from the reference\n"})
    (cand_cwd / "a.txt").write_text("changed in the candidate\n")
    cat = py("import sys; sys.stdout.write(sys.stdin.read())")
    [result] = run_cases(DiffRun(cat, cat, ref_cwd, cand_cwd), cases_from_files(["a.txt"]))
    assert result.status is CheckStatus.PASSED


def test_missing_inputs_and_paths_outside_the_checkouts(tmp_path: Path) -> None:
    ref_cwd, cand_cwd = checkouts(tmp_path, {"a.txt": "x\n"})
    (cand_cwd / "a.txt").unlink()
    cat = py("import sys; sys.stdout.write(sys.stdin.read())")
    by_path = py("import sys; sys.stdout.write(open(sys.argv[1]).read())", "{input}")
    [result] = run_cases(DiffRun(by_path, by_path, ref_cwd, cand_cwd), cases_from_files(["a.txt"]))
    assert result.status is CheckStatus.ERROR and "missing from the candidate's checkout" in result.message
    [fed] = run_cases(DiffRun(cat, cat, ref_cwd, cand_cwd), cases_from_files(["a.txt"]))
    assert fed.status is CheckStatus.PASSED, "on stdin only the reference's copy is read"
    (ref_cwd / "a.txt").unlink()
    [gone] = run_cases(DiffRun(cat, cat, ref_cwd, cand_cwd), cases_from_files(["a.txt"]))
    assert gone.status is CheckStatus.ERROR and "missing from the reference's checkout" in gone.message
    for bad in ("/etc/passwd", "../a.txt", "."):
        with pytest.raises(ValueError, match="inside the checkouts"):
            DiffCase(bad, input_rel=bad)


def test_cases_from_files_takes_relative_paths_or_paths_under_a_root(tmp_path: Path) -> None:
    assert cases_from_files(["b.txt", "in/a.txt"]) == [DiffCase("b.txt", input_rel="b.txt"),
                                                       DiffCase("in/a.txt", input_rel="in/a.txt")]
    assert cases_from_files([tmp_path / "in" / "a.txt"], tmp_path) == [DiffCase("in/a.txt", input_rel="in/a.txt")]


# -- normalisation on bytes ------------------------------------------------------------------------

def test_replacements_are_bytes_patterns_applied_per_line() -> None:
    rules = Normalise(replacements=((r"^at \d+$", "at T"), (r"0x[0-9a-f]+", "ADDR"), ("é", "e")))
    assert rules.apply(b"at 12\nobj at 0xdeadbeef\nat 13 \xff\ncaf\xc3\xa9\n") == (
        b"at T\nobj at ADDR\nat 13 \xff\ncafe\n")
    assert Normalise(replacements=(("b", "x\ny"),), sort_lines=True).apply(b"b\na\n") == b"a\nx\ny\n"


def test_strip_whitespace_trims_lines_and_blank_edges_only() -> None:
    rules = Normalise(strip_whitespace=True)
    assert rules.apply(b"\n \n a \t\r\n\n\nb  \n\n\n") == b" a\n\n\nb"
    assert rules.apply(b"\xff \n") == b"\xff"


def test_sort_lines_keeps_a_final_newline_final() -> None:
    assert Normalise(sort_lines=True).apply(b"b\na\n") == b"a\nb\n"
    assert Normalise(sort_lines=True).apply(b"b\na") == b"a\nb"


def test_json_canonical_on_bytes_and_its_raw_fallback() -> None:
    rules = Normalise(json_canonical=True)
    assert rules.apply(b'{"b": 1, "a": [1, 2]}') == rules.apply(b'{"a":[1,2],"b":1}\n')
    assert rules.apply(b'{"b": 1, "a": 2}\nnot json\n{"c": 3}') == b'{"a": 2, "b": 1}\nnot json\n{"c": 3}'
    invalid = b'{"b": 1, "a": "\xff"}'
    assert rules.apply(invalid) == invalid, "not UTF-8: compared as the raw bytes"
    assert rules.apply(b'{"b": 1, "a": "\xff"}') != rules.apply(b'{"a": "\xff", "b": 1}')
    assert rules.apply(b'{"a": "\xfe"}') != rules.apply(b'{"a": "\xff"}')


def test_json_canonical_end_to_end_with_invalid_utf8(tmp_path: Path) -> None:
    rules = Normalise(json_canonical=True)
    assert one(make_run(writes(b'{"b": 1, "a": 2}'), writes(b'{"a":2,"b":1}'), tmp_path,
                        normalise=rules)).status is CheckStatus.PASSED
    assert one(make_run(writes(b'{"a": "\xff"}'), writes(b'{"a": "\xfe"}'), tmp_path,
                        normalise=rules)).status is CheckStatus.FAILED
    assert one(make_run(writes(b'{"a": "\xff"}'), writes(b'{"a": "\xff"}'), tmp_path,
                        normalise=rules)).status is CheckStatus.PASSED


# -- the candidate's sandbox: masked paths ---------------------------------------------------------

def bwrap_sandbox(worktree: Path) -> BwrapSandbox:
    sandbox = BwrapSandbox(Policy(), worktree=worktree, git_dir=None)
    try:
        sandbox.check()
    except SandboxUnavailable as exc:
        pytest.skip(str(exc))
    return sandbox


def test_candidate_masked_reaches_the_candidates_sandbox(tmp_path: Path) -> None:
    ref_cwd, cand_cwd = checkouts(tmp_path, {"reference.txt": "the reference's secret\n"})
    reference = py("print('visible')")
    candidate = py("try:\n    print('visible' if open('reference.txt').read() else 'masked')\n"
                   "except OSError:\n    print('masked')")
    with bwrap_sandbox(cand_cwd) as sandbox:
        plain = DiffRun(reference, candidate, ref_cwd, cand_cwd)
        assert run_cases(plain, [DiffCase("x")], sandbox)[0].status is CheckStatus.PASSED
        masked = DiffRun(reference, candidate, ref_cwd, cand_cwd, candidate_masked=(cand_cwd / "reference.txt",))
        [result] = run_cases(masked, [DiffCase("x")], sandbox)
    assert result.status is CheckStatus.FAILED
    assert "-visible" in result.detail and "+masked" in result.detail


def test_a_reference_that_bubblewrap_cannot_execute_is_reference_failed(tmp_path: Path) -> None:
    ref_cwd, cand_cwd = checkouts(tmp_path)
    with bwrap_sandbox(ref_cwd) as sandbox:
        run = DiffRun((str(ref_cwd / "missing"),), py("print(1)"), ref_cwd, cand_cwd)
        [result] = run_differential(run, [DiffCase("x")], sandbox, NoSandbox())
    assert result.status is CheckStatus.REFERENCE_FAILED and "could not be executed" in result.message
