"""The differential gate: the same inputs through a reference and a candidate, outputs compared.

For ports and refactors the strongest oracle is the old program. Each case (an input file fed on
stdin or substituted for `{input}` in the argv, or extra argv) runs through both commands with
`run_process` under the sandbox the caller passes; stdout (and, unless told otherwise, the exit code)
must match, exactly or after normalisation rules (strip trailing whitespace, regex replacements for
timestamps and addresses, sort lines for unordered output, canonical JSON). A mismatch is a failing
check `differential:<case>` whose detail is a unified diff of the normalised outputs, cut to a few
dozen lines: enough to see the first differences, not a flood.
"""

from __future__ import annotations

import difflib
import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.process import Limits, NoSandbox, ProcessSpec, Sandbox, run_process

_LINE_MAX = 200


@dataclass(frozen=True, slots=True)
class Normalise:
    strip_whitespace: bool = False  # trailing spaces on each line, and leading/trailing blank lines
    replacements: tuple[tuple[str, str], ...] = ()  # (regex, replacement), applied in order
    sort_lines: bool = False
    json_canonical: bool = False  # parse as JSON (or JSON lines) and dump with sorted keys

    def apply(self, text: str) -> str:
        if self.json_canonical:
            text = _canonical_json(text)
        for pattern, replacement in self.replacements:
            text = re.sub(pattern, replacement, text, flags=re.MULTILINE)
        lines = text.splitlines()
        if self.strip_whitespace:
            lines = [line.rstrip() for line in lines]
            while lines and not lines[0]:
                lines.pop(0)
            while lines and not lines[-1]:
                lines.pop()
        if self.sort_lines:
            lines.sort()
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class DiffCase:
    name: str
    args: tuple[str, ...] = ()  # appended to both argvs
    input_file: Path | None = None  # substituted for {input} in the argv, else fed on stdin


@dataclass(frozen=True, slots=True)
class DiffRun:
    reference: tuple[str, ...]
    candidate: tuple[str, ...]
    cwd: Path
    normalise: Normalise = Normalise()
    compare_exit_code: bool = True
    timeout: float = 60.0
    max_diff_lines: int = 40
    output_bytes: int = 16 * 1024 * 1024
    name: str = "differential"  # the gate's name: check ids are `<name>:<case>`


def cases_from_files(files: Sequence[Path], root: Path | None = None) -> list[DiffCase]:
    return [DiffCase(str(f.relative_to(root)) if root else f.name, input_file=f) for f in sorted(files)]


def _canonical_json(text: str) -> str:
    try:
        return json.dumps(json.loads(text), sort_keys=True, indent=1)
    except ValueError:
        pass
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.dumps(json.loads(line), sort_keys=True))
        except ValueError:
            lines.append(line)
    return "\n".join(lines)


def _run(argv: tuple[str, ...], case: DiffCase, run: DiffRun, sandbox: Sandbox, scratch: Path,
         tag: str) -> tuple[str, int | None, bool]:
    argv_list = list(argv)
    stdin: bytes | None = None
    if case.input_file is not None:
        if any("{input}" in a for a in argv_list):
            argv_list = [a.replace("{input}", str(case.input_file)) for a in argv_list]
        else:
            stdin = case.input_file.read_bytes()
    log = scratch / f"{tag}.out"
    spec = ProcessSpec(tuple([*argv_list, *case.args]), run.cwd, timeout=run.timeout, stdin=stdin,
                       limits=Limits(output_bytes=run.output_bytes), label=f"differential:{case.name}:{tag}")
    result = run_process(spec, sandbox, log_path=log, stderr_path=scratch / f"{tag}.err")
    text = log.read_bytes().decode("utf-8", "replace") if log.exists() else ""
    return text, result.exit_code, result.timed_out


def _diff(reference: str, candidate: str, cap: int) -> tuple[str, int]:
    lines = list(difflib.unified_diff(reference.splitlines(), candidate.splitlines(), "reference", "candidate",
                                      lineterm="", n=1))
    changed = sum(1 for line in lines if line[:1] in "+-" and not line.startswith(("+++", "---")))
    shown = [line[:_LINE_MAX] for line in lines[:cap]]
    if len(lines) > cap:
        shown.append(f"[diff cut: {len(lines) - cap} more lines]")
    return "\n".join(shown), changed


def check_case(case: DiffCase, run: DiffRun, sandbox: Sandbox) -> CheckResult:
    check_id = f"{run.name}:{case.name}"
    with tempfile.TemporaryDirectory(prefix="onloop-diff-") as tmp:
        scratch = Path(tmp)
        ref_out, ref_code, ref_timeout = _run(run.reference, case, run, sandbox, scratch, "reference")
        cand_out, cand_code, cand_timeout = _run(run.candidate, case, run, sandbox, scratch, "candidate")
    if ref_timeout or cand_timeout:
        which = "reference" if ref_timeout else "candidate"
        return CheckResult(check_id, CheckStatus.ERROR, f"the {which} timed out after {run.timeout:g}s")
    diff, changed = _diff(run.normalise.apply(ref_out), run.normalise.apply(cand_out), run.max_diff_lines)
    problems = []
    if changed:
        problems.append(f"output differs from the reference ({changed} lines differ)")
    if run.compare_exit_code and ref_code != cand_code:
        problems.append(f"exit code {cand_code}, reference {ref_code}")
    if not problems:
        return CheckResult(check_id, CheckStatus.PASSED)
    return CheckResult(check_id, CheckStatus.FAILED, "; ".join(problems), detail=diff)


def run_differential(run: DiffRun, cases: Sequence[DiffCase], sandbox: Sandbox | None = None) -> list[CheckResult]:
    """One check per case, in case-name order. `sandbox` defaults to NoSandbox (the loop passes its own)."""
    box = sandbox if sandbox is not None else NoSandbox()
    return [check_case(case, run, box) for case in sorted(cases, key=lambda c: c.name)]
