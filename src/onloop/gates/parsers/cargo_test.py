"""`cargo test` text output (libtest's default "pretty" format), plus rustc compile errors.

Test ids are `<target>::<test path>`, where target is the source the test binary was built from as
cargo prints it (`Running unittests src/lib.rs (target/debug/deps/demo-1a2b)` gives `src/lib.rs`;
`Doc-tests demo` gives `doc`). The hash in the binary name changes between builds, so it is left out;
the target is kept because two binaries may hold tests with the same path. A build that fails before
any test runs yields one check per rustc error (`cargo:E0308:src/lib.rs:<key>#n`, see `_lint`).
"""

from __future__ import annotations

import re

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers._lint import Diagnostic, sample, to_checks
from onloop.gates.parsers.base import GateOutput

_RUNNING = re.compile(r"^\s*(?:Running (?:unittests )?(?P<src>\S+)|Doc-tests (?P<doc>\S+))", re.MULTILINE)
_TEST = re.compile(r"^test (?P<name>\S+?)(?: - should panic)? \.\.\. (?P<outcome>ok|FAILED|ignored.*)$",
                   re.MULTILINE)
_STDOUT = re.compile(r"^---- (?P<name>\S+) stdout ----\n(?P<body>.*?)(?=^---- |^failures:$|^test result:)",
                     re.MULTILINE | re.DOTALL)
_PANIC = re.compile(r"panicked at (?P<loc>[^\s:]+:\d+(?::\d+)?):?\n?(?P<msg>.*)")
_RUSTC = re.compile(r"^(?P<sev>error|warning)(?:\[(?P<code>E\d+)\])?: (?P<msg>.+)\n\s*--> (?P<path>[^:\n]+):"
                    r"(?P<line>\d+):(?P<col>\d+)$", re.MULTILINE)
_STATUS = {"ok": CheckStatus.PASSED, "FAILED": CheckStatus.FAILED}


class CargoTestParser:
    name = "cargo"

    def detect(self, output: GateOutput) -> bool:
        text = sample(output.output)
        return "test result:" in text or bool(re.search(r"^error(\[E\d+\])?: .+\n\s*--> ", text, re.MULTILINE))

    def parse(self, output: GateOutput) -> list[CheckResult]:
        text = output.output
        checks = _tests(text)
        if not checks:
            checks = to_checks(
                Diagnostic("cargo", m["code"] or "error", m["path"], int(m["line"]), int(m["col"]), m["msg"])
                for m in _RUSTC.finditer(text) if m["sev"] == "error"
            )
        return checks


def _tests(text: str) -> list[CheckResult]:
    starts = [(m.start(), m["src"] or "doc") for m in _RUNNING.finditer(text)] or [(0, "tests")]
    checks: list[CheckResult] = []
    for index, (start, target) in enumerate(starts):
        end = starts[index + 1][0] if index + 1 < len(starts) else len(text)
        chunk = text[start:end]
        failures = {m["name"]: m["body"] for m in _STDOUT.finditer(chunk)}
        for m in _TEST.finditer(chunk):
            status = _STATUS.get(m["outcome"], CheckStatus.SKIPPED)
            message, location = _panic(failures.get(m["name"], ""))
            detail = "\n".join(failures.get(m["name"], "").strip().splitlines()[:12])
            checks.append(CheckResult(f"{target}::{m['name']}", status, message, location, detail))
    return checks


def _panic(body: str) -> tuple[str, str]:
    match = _PANIC.search(body)
    if not match:
        lines = [line.strip() for line in body.splitlines() if line.strip()]
        return (lines[0][:300] if lines else ""), ""
    message = match["msg"].strip()
    location = match["loc"]
    # libtest prints `assertion `left == right` failed` then the two sides on the next lines.
    rest = body[match.end():].strip("\n").splitlines()[:2]
    if message.startswith("assertion") and rest:
        message = " ".join([message, *(line.strip() for line in rest if line.strip().startswith(("left", "right")))])
    return message[:300], location
