"""The differential gate: the same inputs through a reference and a candidate, outputs compared.

For ports and refactors the strongest oracle is the old program. Each case (an input file, plus
optional extra argv) runs through the reference and then the candidate with `run_process`; stdout
(and, unless told otherwise, the exit code) must match, exactly or after normalisation rules. The
rules below each close a way for a wrong candidate to pass, or for a right one to be blamed:

- Two sides, two checkouts. The reference runs in a checkout of the base commit under its own
  sandbox, the candidate in a checkout of the candidate commit under another, optionally with the
  reference's files masked (`candidate_masked`), so the candidate cannot simply call the reference.
  `{input}` in an argv becomes that side's own `<cwd>/<input_rel>`; without it the input's bytes,
  read from the reference's checkout, are fed on stdin (the candidate's copy cannot change them).
- Outputs are compared whole, as bytes. Each side's stdout streams to a file under a cap of
  `max_output + 1` bytes, so going over `max_output` is detectable; an output over it is never
  compared in part (two outputs equal up to any cap are not equal). It is an error on the candidate's
  side and `REFERENCE_FAILED` on the reference's. Below the cap, outputs are compared by a sha256 of
  the normalised bytes, streamed from each file in turn (a chunk or a line at a time), so two
  multi-megabyte outputs are never both in memory. Only `sort_lines` and `json_canonical` need a
  whole output in memory (one at a time to compare, both to show the diff of a mismatch), which
  `max_output` bounds.
- Normalisation works on bytes, never on text decoded with replacement (which would make different
  invalid bytes equal). Lines are split on b"\\n" only, so with no rules the comparison is exact (CRLF
  against LF, or a missing final newline, is a difference). In order: `json_canonical` decodes the
  output strictly as UTF-8 and dumps it (or each line, as JSON lines) with sorted keys, falling back
  to the raw bytes when it is not UTF-8 or not JSON; `replacements` are str regex pairs from the
  config, encoded as UTF-8 and compiled as bytes patterns (so `\\w` and character classes are ASCII
  and byte-wise), applied to each line in turn with MULTILINE, which equals applying them to the
  whole text for every pattern that does not match across a newline; `strip_whitespace` drops
  trailing ASCII whitespace of each line and leading and trailing blank lines; `sort_lines` sorts the
  lines, keeping a final newline final.
- A reference that fails on an input says nothing about the candidate there: timed out, killed by a
  signal (a negative return code, or 128+N as shells and bubblewrap report it), could not execute
  (126 or 127, as shells and prlimit report it, or an exec error), or output over `max_output`
  gives a `REFERENCE_FAILED` check and the candidate is not run. An ordinary non-zero exit code of
  the reference is behaviour to match (grep exits 1 on no match), not a failure.
- A candidate that times out, cannot execute or floods its output is an ERROR check (it could not be
  judged); one killed by a signal crashed, which is a FAILED check whatever its output.
- A mismatch is a FAILED check `<name>:<case>` whose detail is a diff of the first differing region
  of the normalised outputs (a few lines of context, then at most `max_diff_lines` lines). Only this
  human-readable detail is decoded, with backslash escapes for invalid bytes, so two different
  invalid bytes still look different.
"""

from __future__ import annotations

import collections
import difflib
import hashlib
import itertools
import json
import re
import signal
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.process import Limits, ProcessSpec, Sandbox, run_process

DEFAULT_MAX_OUTPUT = 256 * 1024 * 1024
_LINE_MAX = 200  # characters of one line shown in a diff
_CONTEXT = 2  # equal lines shown before the first difference
_CHUNK = 1024 * 1024
_STDERR_TAIL = 10  # lines of a broken side's stderr shown in the check's detail
_STDERR_TAIL_BYTES = 4096
_SIGNAL_MAX = 64  # the highest signal number on Linux (SIGRTMAX)


@dataclass(frozen=True, slots=True)
class Normalise:
    """Rules applied to both outputs before comparing; see the module docstring for their order."""

    strip_whitespace: bool = False  # trailing whitespace on each line, and leading/trailing blank lines
    replacements: tuple[tuple[str, str], ...] = ()  # (regex, replacement), applied in order to each line
    sort_lines: bool = False
    json_canonical: bool = False  # parse as JSON (or JSON lines) and dump with sorted keys
    _compiled: tuple[tuple[re.Pattern[bytes], bytes], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Compiled once here, so a bad regex fails when the gate is built, not on some input.
        compiled = tuple((re.compile(p.encode(), re.MULTILINE), r.encode()) for p, r in self.replacements)
        object.__setattr__(self, "_compiled", compiled)

    @property
    def streams(self) -> bool:
        """True when each line is normalised on its own, so no output is ever held whole."""
        return not (self.sort_lines or self.json_canonical)

    @property
    def exact(self) -> bool:
        """True when there is nothing to normalise: the raw bytes are compared."""
        return self.streams and not self.strip_whitespace and not self._compiled

    def apply(self, data: bytes) -> bytes:
        """The normalised form of a whole output: what the comparison hashes."""
        return b"\n".join(self.lines(data))

    def lines(self, data: bytes) -> Iterator[bytes]:
        """The normalised lines of a whole output (joined with b"\\n", they are what is compared)."""
        if self.json_canonical:
            data = _canonical_json(data)
        lines = self.stream(data.split(b"\n"))
        return iter(_sorted_lines(list(lines))) if self.sort_lines else lines

    def stream(self, lines: Iterable[bytes]) -> Iterator[bytes]:
        """The per-line rules (replacements, strip_whitespace) over raw lines, lazily."""
        replaced = self._replaced(lines) if self._compiled else iter(lines)
        return _trim_blank_edges(line.rstrip() for line in replaced) if self.strip_whitespace else replaced

    def _replaced(self, lines: Iterable[bytes]) -> Iterator[bytes]:
        for line in lines:
            for pattern, replacement in self._compiled:
                line = pattern.sub(replacement, line)
            yield from line.split(b"\n")  # a replacement that inserts newlines makes new lines, as before


@dataclass(frozen=True, slots=True)
class DiffCase:
    """One input: a file at the same relative path in both checkouts, and/or extra argv for both sides."""

    name: str  # the check id is `<gate name>:<name>`
    args: tuple[str, ...] = ()  # appended to both argvs
    input_rel: str | None = None  # relative to each side's cwd: `{input}` in the argv, else fed on stdin

    def __post_init__(self) -> None:
        # An absolute or escaping path would make both sides read one file outside their checkouts.
        if self.input_rel is None:
            return
        rel = PurePosixPath(self.input_rel)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"a differential input must be a path inside the checkouts, not {self.input_rel!r}")


@dataclass(frozen=True, slots=True)
class DiffRun:
    """How to run and compare the two sides; the same for every case of one gate."""

    reference: tuple[str, ...]
    candidate: tuple[str, ...]
    reference_cwd: Path  # a checkout of the base commit
    candidate_cwd: Path  # a checkout of the candidate commit, with the same inputs
    normalise: Normalise = Normalise()
    compare_exit_code: bool = True
    timeout: float = 60.0  # per side and case
    max_diff_lines: int = 40
    max_output: int = DEFAULT_MAX_OUTPUT  # bytes of one side's stdout (or stderr) on one input
    name: str = "differential"  # the gate's name: check ids are `<name>:<case>`
    candidate_masked: tuple[Path, ...] = ()  # host paths hidden from the candidate (the reference's files)

    def __post_init__(self) -> None:
        if self.max_output < 0:
            raise ValueError(f"gates.{self.name}.max_output must not be negative")


def cases_from_files(files: Iterable[str | PurePath], root: Path | None = None) -> list[DiffCase]:
    """One case per input file, named by its path relative to the checkouts.

    `files` are relative paths already, or (with `root`) paths under `root`, such as a glob of one
    checkout, made relative to it.
    """
    rels = {(PurePath(f).relative_to(root) if root is not None else PurePath(f)).as_posix() for f in files}
    return [DiffCase(rel, input_rel=rel) for rel in sorted(rels)]


def run_differential(
    run: DiffRun,
    cases: Sequence[DiffCase],
    reference_sandbox: Sandbox,
    candidate_sandbox: Sandbox,
    scratch: Path | None = None,
) -> list[CheckResult]:
    """One check per case, in case-name order.

    Outputs are streamed to files in a directory under `scratch` (the system temp dir by default),
    removed after each case: two sides of up to `max_output` bytes each must not pile up per input.
    """
    sides = (
        _Side("reference", run.reference, run.reference_cwd, reference_sandbox),
        _Side("candidate", run.candidate, run.candidate_cwd, candidate_sandbox, run.candidate_masked),
    )
    results = []
    for case in sorted(cases, key=lambda c: c.name):
        with tempfile.TemporaryDirectory(prefix="onloop-diff-", dir=scratch) as tmp:
            results.append(_check_case(case, run, sides, Path(tmp)))
    return results


# -- running one side -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Side:
    """One side of the comparison: what runs, where, and under which sandbox."""

    label: str  # "reference" or "candidate"
    argv: tuple[str, ...]
    cwd: Path
    sandbox: Sandbox
    masked: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class _Output:
    """What one side did on one input: where its streams went and how it ended."""

    stdout: Path
    stderr: Path
    exit_code: int | None
    timed_out: bool
    stdout_bytes: int
    launch_error: str = ""  # run_process could not start it at all


@dataclass(frozen=True, slots=True)
class _Broken:
    """Why a side's run says nothing comparable; `crashed` tells a signal from a failure to run."""

    reason: str
    crashed: bool = False


def _check_case(case: DiffCase, run: DiffRun, sides: tuple[_Side, _Side], scratch: Path) -> CheckResult:
    check_id = f"{run.name}:{case.name}"
    reference, candidate = sides
    missing = _missing_input(case, sides)
    if missing:
        return CheckResult(check_id, CheckStatus.ERROR, missing)
    stdin = (reference.cwd / case.input_rel).read_bytes() if case.input_rel is not None else None
    ref = _run_side(reference, case, run, stdin, scratch)
    broken = _broken(ref, run, reference.label)
    if broken:
        message = f"{broken.reason}; the candidate is not judged on this input"
        return CheckResult(check_id, CheckStatus.REFERENCE_FAILED, message, detail=_stderr_tail(ref))
    cand = _run_side(candidate, case, run, stdin, scratch)
    broken = _broken(cand, run, candidate.label)
    if broken:
        status = CheckStatus.FAILED if broken.crashed else CheckStatus.ERROR
        return CheckResult(check_id, status, broken.reason, detail=_stderr_tail(cand))
    return _compare(check_id, ref, cand, run)


def _missing_input(case: DiffCase, sides: tuple[_Side, _Side]) -> str:
    """An input the run needs but a checkout lacks: the reference's copy always (it is also the stdin
    of both sides), the candidate's when its argv names `{input}`."""
    if case.input_rel is None:
        return ""
    reference, candidate = sides
    for side in (reference, candidate) if _by_path(candidate, case) else (reference,):
        if not (side.cwd / case.input_rel).is_file():
            return f"the input {case.input_rel} is missing from the {side.label}'s checkout"
    return ""


def _by_path(side: _Side, case: DiffCase) -> bool:
    """True when this side gets the input as `{input}` in its argv, rather than on stdin."""
    return case.input_rel is not None and any("{input}" in arg for arg in (*side.argv, *case.args))


def _run_side(side: _Side, case: DiffCase, run: DiffRun, stdin: bytes | None, scratch: Path) -> _Output:
    stdout, stderr = scratch / f"{side.label}.out", scratch / f"{side.label}.err"
    spec = ProcessSpec(
        _argv(side, case),
        side.cwd,
        timeout=run.timeout,
        stdin=None if _by_path(side, case) else stdin,
        limits=Limits(output_bytes=run.max_output + 1),  # one byte more than allowed: going over shows
        label=f"{run.name}:{case.name}:{side.label}",
        masked=side.masked,
    )
    try:
        result = run_process(spec, side.sandbox, log_path=stdout, stderr_path=stderr)
    except OSError as exc:  # Popen itself failed: no such file, not executable
        return _Output(stdout, stderr, None, False, 0, launch_error=str(exc))
    return _Output(stdout, stderr, result.exit_code, result.timed_out, result.output_bytes)


def _argv(side: _Side, case: DiffCase) -> tuple[str, ...]:
    """The side's argv with the case's args; `{input}` becomes this side's own copy of the input."""
    argv = (*side.argv, *case.args)
    if case.input_rel is None:
        return argv
    path = str(side.cwd / case.input_rel)
    return tuple(arg.replace("{input}", path) for arg in argv)


def _broken(out: _Output, run: DiffRun, side: str) -> _Broken | None:
    """Why this run cannot be compared, or None when it ran to an end (any exit code) within the caps."""
    if out.launch_error:
        return _Broken(f"the {side} could not be executed: {out.launch_error}")
    if out.timed_out:
        return _Broken(f"the {side} timed out after {run.timeout:g}s")
    cap = f"gates.{run.name}.max_output ({run.max_output} bytes); outputs are compared whole, never in part"
    if out.stdout_bytes > run.max_output:
        return _Broken(f"the {side}'s output exceeds {cap}")
    if out.stderr.exists() and out.stderr.stat().st_size > run.max_output:
        return _Broken(f"the {side}'s stderr exceeds {cap}")
    return _broken_by_exit(out, side)


def _broken_by_exit(out: _Output, side: str) -> _Broken | None:
    code = out.exit_code
    if code is None:
        return _Broken(f"the {side} has no exit code")
    if code < 0 or 128 < code <= 128 + _SIGNAL_MAX:
        number = -code if code < 0 else code - 128
        return _Broken(f"the {side} was killed by {_signal_name(number)} (exit code {code})", crashed=True)
    if code in (126, 127):
        why = "not executable" if code == 126 else "command not found"
        return _Broken(f"the {side} could not be executed (exit code {code}: {why})")
    return None


def _signal_name(number: int) -> str:
    try:
        return f"signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"signal {number}"


def _stderr_tail(out: _Output) -> str:
    """The last lines of a side's stderr: usually the reason it broke."""
    if not out.stderr.exists():
        return ""
    with out.stderr.open("rb") as stream:
        stream.seek(max(0, out.stderr.stat().st_size - _STDERR_TAIL_BYTES))
        data = stream.read()
    lines = data.decode("utf-8", "backslashreplace").splitlines()[-_STDERR_TAIL:]
    return "\n".join(line[:_LINE_MAX] for line in lines)


# -- comparing two outputs ------------------------------------------------------------------------


def _compare(check_id: str, ref: _Output, cand: _Output, run: DiffRun) -> CheckResult:
    problems = []
    detail = ""
    if _digest(ref.stdout, run.normalise) != _digest(cand.stdout, run.normalise):
        line, detail = _diff(ref.stdout, cand.stdout, run)
        problems.append(f"output differs from the reference (first difference at line {line})")
    if run.compare_exit_code and ref.exit_code != cand.exit_code:
        problems.append(f"exit code {cand.exit_code}, reference {ref.exit_code}")
    if not problems:
        return CheckResult(check_id, CheckStatus.PASSED)
    return CheckResult(check_id, CheckStatus.FAILED, "; ".join(problems), detail=detail)


def _digest(path: Path, normalise: Normalise) -> bytes:
    """sha256 of the normalised output stored at `path`, read once, in chunks or lines where possible."""
    digest = hashlib.sha256()
    if normalise.exact:
        with path.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
        return digest.digest()
    for index, line in enumerate(_output_lines(path, normalise)):
        if index:
            digest.update(b"\n")
        digest.update(line)
    return digest.digest()


def _output_lines(path: Path, normalise: Normalise) -> Iterator[bytes]:
    if normalise.streams:
        return normalise.stream(_file_lines(path))
    return normalise.lines(path.read_bytes())  # bounded by max_output: larger outputs never get here


def _file_lines(path: Path) -> Iterator[bytes]:
    """The lines of a file exactly as bytes.split(b"\\n") would give them, read one at a time."""
    ended = True  # an empty file, like b"".split(b"\n"), is one empty line
    with path.open("rb") as stream:
        for line in stream:
            ended = line.endswith(b"\n")
            yield line[:-1] if ended else line
    if ended:
        yield b""


def _trim_blank_edges(lines: Iterable[bytes]) -> Iterator[bytes]:
    """Drop leading and trailing empty lines, holding back only a count of the blank lines in a row."""
    started = False
    pending = 0
    for line in lines:
        if not line:
            pending += 1 if started else 0
            continue
        yield from itertools.repeat(b"", pending)
        started, pending = True, 0
        yield line


def _sorted_lines(lines: list[bytes]) -> list[bytes]:
    # The empty piece after a final newline stays last: "b\na\n" sorts to "a\nb\n", not "\na\nb".
    if len(lines) > 1 and lines[-1] == b"":
        return [*sorted(lines[:-1]), b""]
    return sorted(lines)


def _canonical_json(data: bytes) -> bytes:
    """The output as canonical JSON (or JSON lines); not UTF-8 means raw bytes, never a lossy decode."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    whole = _json_dump(text, indent=1)
    if whole is not None:
        return whole.encode()
    return "\n".join(_json_line(line) for line in text.split("\n")).encode()


def _json_line(line: str) -> str:
    dumped = _json_dump(line, indent=None)
    return dumped if dumped is not None else line  # a line that is not JSON is compared as it is


def _json_dump(text: str, indent: int | None) -> str | None:
    try:
        return json.dumps(json.loads(text), sort_keys=True, indent=indent)
    except (ValueError, RecursionError):
        return None


# -- the diff shown to a human --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Region:
    """The first differing region of two normalised outputs, with a little equal context before it."""

    start: int  # 0-based index of the windows' first line
    first: int  # 0-based index of the first differing line
    reference: list[bytes]
    candidate: list[bytes]


def _diff(reference: Path, candidate: Path, run: DiffRun) -> tuple[int, str]:
    """The 1-based line of the first difference, and a capped diff of the region from there."""
    ref_lines = _output_lines(reference, run.normalise)
    cand_lines = _output_lines(candidate, run.normalise)
    region = _first_region(ref_lines, cand_lines, run.max_diff_lines)
    return region.first + 1, _render(region, run.max_diff_lines)


def _first_region(reference: Iterator[bytes], candidate: Iterator[bytes], after: int) -> _Region:
    """Walk both outputs in step to their first difference, then take up to `after` more lines of each."""
    before: collections.deque[bytes] = collections.deque(maxlen=_CONTEXT)
    index = 0
    for index, (ref, cand) in enumerate(itertools.zip_longest(reference, candidate)):
        if ref != cand:
            ref_window = [*before, *([ref] if ref is not None else []), *itertools.islice(reference, after)]
            cand_window = [*before, *([cand] if cand is not None else []), *itertools.islice(candidate, after)]
            return _Region(index - len(before), index, ref_window, cand_window)
        assert ref is not None
        before.append(ref)
    # Equal lists join to equal bytes, so differing digests always stop above; an empty region
    # rather than an exception keeps a bug here from hiding the mismatch itself.
    return _Region(index, index, [], [])


def _render(region: _Region, cap: int) -> str:
    reference, candidate = region.reference, region.candidate
    start = region.start + 1
    lines = ["--- reference", "+++ candidate", f"@@ -{start},{len(reference)} +{start},{len(candidate)} @@"]
    matcher = difflib.SequenceMatcher(None, reference, candidate, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            lines += [" " + _shown(line) for line in reference[i1:i2]]
            continue
        lines += ["-" + _shown(line) for line in reference[i1:i2]]
        lines += ["+" + _shown(line) for line in candidate[j1:j2]]
    shown = lines[:cap]
    if len(lines) > cap:
        shown.append(f"[diff cut: {len(lines) - cap} more lines]")
    return "\n".join(shown)


def _shown(line: bytes) -> str:
    """One line for a human: invalid bytes as escapes (\\xff stays distinct from \\xfe), long lines cut."""
    text = line[:_LINE_MAX].decode("utf-8", "backslashreplace")
    return text + " [line cut]" if len(line) > _LINE_MAX else text
