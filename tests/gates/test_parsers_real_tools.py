"""Parsers on outputs of real tools run on small projects made in the test (pytest, unittest, ruff,
mypy from the venv; cargo when installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers import GateOutput, detect_format, parse_gate_output

BIN = Path(sys.executable).parent

PROJECT = {
    "calc.py": "def add(a, b):\n    return a + b\n\n\ndef div(a, b):\n    return a / b\n",
    "tests/__init__.py": "",
    "tests/test_calc.py": (
        "import pytest\nfrom calc import add, div\n\n\n"
        "def test_add():\n    assert add(1, 2) == 3\n\n\n"
        "@pytest.mark.parametrize('a,b', [(1, 1), (2, 0), (3, 0)])\n"
        "def test_div(a, b):\n    assert div(a, b) >= 0\n\n\n"
        "class TestThings:\n    def test_wrong(self):\n        assert add(2, 2) == 5\n\n"
        "    def test_ok(self):\n        assert True\n\n\n"
        "@pytest.mark.skip(reason='later')\ndef test_later():\n    pass\n"
    ),
}
FAILING = {
    "tests/test_calc.py::test_div[2-0]", "tests/test_calc.py::test_div[3-0]",
    "tests/test_calc.py::TestThings::test_wrong",
}


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def run(argv: list[str], cwd: Path, timeout: float = 120) -> GateOutput:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["COLUMNS"] = "120"
    # Merged like the gate runner merges them: cargo prints "Running ..." on stderr between test binaries.
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, env=env)
    return GateOutput("gate", proc.returncode, False, proc.stdout)


def failing(checks: list[CheckResult]) -> dict[str, CheckResult]:
    return {c.check_id: c for c in checks if c.status.failing}


@pytest.mark.parametrize("flags", [["-q"], ["-rA"], ["-vv", "--tb=long"], ["-q", "--tb=short"], ["-q", "--tb=line"]])
def test_real_pytest_text(tmp_path: Path, flags: list[str]) -> None:
    write(tmp_path, PROJECT)
    output = run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *flags], tmp_path)
    assert output.exit_code == 1
    assert detect_format(output) == "pytest"
    checks = parse_gate_output(output)
    found = failing(checks)
    assert set(found) == FAILING
    assert "ZeroDivisionError" in found["tests/test_calc.py::test_div[2-0]"].message
    if flags[0] != "-q" or "--tb=line" not in flags:
        assert found["tests/test_calc.py::test_div[2-0]"].location.startswith("calc.py:6")
    if flags[0] in ("-rA", "-vv"):
        statuses = {c.check_id: c.status for c in checks}
        assert statuses["tests/test_calc.py::test_add"] is CheckStatus.PASSED
        assert statuses["tests/test_calc.py::TestThings::test_ok"] is CheckStatus.PASSED


def test_real_pytest_collection_error(tmp_path: Path) -> None:
    write(tmp_path, {**PROJECT, "tests/test_broken.py": "import no_such_module_xyz\n"})
    output = run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"], tmp_path)
    found = failing(parse_gate_output(output))
    assert "tests/test_broken.py" in found
    assert found["tests/test_broken.py"].status is CheckStatus.ERROR
    assert "no_such_module_xyz" in found["tests/test_broken.py"].message


def test_real_pytest_junit_matches_text(tmp_path: Path) -> None:
    write(tmp_path, PROJECT)
    report = tmp_path / "report.xml"
    output = run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={report}"], tmp_path)
    junit = failing(parse_gate_output(GateOutput("g", output.exit_code, False, "", report_path=report), "junit"))
    assert set(junit) == {"tests.test_calc::test_div[2-0]", "tests.test_calc::test_div[3-0]",
                          "tests.test_calc.TestThings::test_wrong"}
    assert junit["tests.test_calc::test_div[2-0]"].location == "calc.py:6"


def test_real_unittest_verbose(tmp_path: Path) -> None:
    write(tmp_path, {
        "calc.py": PROJECT["calc.py"],
        "test_calc.py": (
            "import unittest\nfrom calc import add, div\n\n\nclass CalcTest(unittest.TestCase):\n"
            "    def test_add(self):\n        self.assertEqual(add(1, 2), 3)\n\n"
            "    def test_div(self):\n        self.assertEqual(div(1, 0), 0)\n\n"
            "    def test_wrong(self):\n        self.assertEqual(add(2, 2), 5)\n\n"
            "    @unittest.skip('later')\n    def test_later(self):\n        pass\n"
        ),
    })
    output = run([sys.executable, "-m", "unittest", "-v"], tmp_path)
    assert detect_format(output) == "unittest"
    checks = {c.check_id: c for c in parse_gate_output(output)}
    assert checks["test_calc.CalcTest.test_add"].status is CheckStatus.PASSED
    assert checks["test_calc.CalcTest.test_div"].status is CheckStatus.ERROR
    assert checks["test_calc.CalcTest.test_div"].message == "ZeroDivisionError: division by zero"
    assert checks["test_calc.CalcTest.test_wrong"].status is CheckStatus.FAILED
    assert checks["test_calc.CalcTest.test_wrong"].message == "AssertionError: 4 != 5"
    assert checks["test_calc.CalcTest.test_later"].status is CheckStatus.SKIPPED


def test_real_unittest_with_output_between_a_test_and_its_status(tmp_path: Path) -> None:
    """What a test prints (a warning on stderr, its own prints) lands between `... ` and the status."""
    write(tmp_path, {
        "test_noisy.py": (
            "import sys\nimport unittest\nimport warnings\n\n\nclass Noisy(unittest.TestCase):\n"
            "    def test_warns(self):\n        warnings.warn('unclosed file', ResourceWarning)\n\n"
            "    def test_prints(self):\n        print('progress\\nok')\n        sys.stderr.write('note\\n')\n"
            "        self.assertEqual(1, 2)\n\n"
            "    def test_quiet(self):\n        pass\n"
        ),
    })
    output = run([sys.executable, "-W", "always", "-m", "unittest", "-v"], tmp_path)
    checks = {c.check_id: c.status for c in parse_gate_output(output, "unittest")}
    assert checks == {"test_noisy.Noisy.test_warns": CheckStatus.PASSED,
                      "test_noisy.Noisy.test_prints": CheckStatus.FAILED,  # its printed "ok" changes nothing
                      "test_noisy.Noisy.test_quiet": CheckStatus.PASSED}


LINT_SOURCE = "import os\nimport sys\n\n\ndef f(x):\n    y = 1\n    z = 2\n    return undefined_name + x\n"


def ruff_ids(tmp_path: Path, fmt: str) -> dict[str, CheckResult]:
    output = run([str(BIN / "ruff"), "check", "--no-cache", "--select", "F", "--output-format", fmt, "."], tmp_path)
    assert output.exit_code == 1
    return failing(parse_gate_output(output))


@pytest.mark.parametrize("fmt", ["full", "concise", "json"])
def test_real_ruff_ids_survive_line_shifts(tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # JSON filenames are absolute; ids are relative to the working directory
    write(tmp_path, {"pkg/mod.py": LINT_SOURCE})
    before = ruff_ids(tmp_path, fmt)
    assert set(before) == {"ruff:F401:pkg/mod.py:os#0", "ruff:F401:pkg/mod.py:sys#0",
                           "ruff:F841:pkg/mod.py:y#0", "ruff:F841:pkg/mod.py:z#0",
                           "ruff:F821:pkg/mod.py:undefined_name#0"}
    write(tmp_path, {"pkg/mod.py": '"""Docstring."""\n\n# three new lines above everything\n' + LINT_SOURCE})
    after = ruff_ids(tmp_path, fmt)
    assert set(after) == set(before)  # same ids: the baseline comparison sees no fake change
    assert after["ruff:F401:pkg/mod.py:os#0"].location != before["ruff:F401:pkg/mod.py:os#0"].location


@pytest.mark.parametrize("json_output", [False, True])
def test_real_mypy(tmp_path: Path, json_output: bool) -> None:
    write(tmp_path, {"m.py": "def f(x: int) -> str:\n    return x\n\n\nf('a')\nundefined_thing\n"})
    flags = ["-O", "json"] if json_output else []
    output = run([str(BIN / "mypy"), "--no-incremental", "--cache-dir", os.devnull, *flags, "m.py"], tmp_path)
    assert output.exit_code == 1
    assert detect_format(output) == "mypy"
    found = failing(parse_gate_output(output))
    assert set(found) == {"mypy:return-value:m.py:int#0", "mypy:arg-type:m.py:f#0",
                          "mypy:name-defined:m.py:undefined_thing#0"}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo not installed")
def test_real_cargo_test(tmp_path: Path) -> None:
    write(tmp_path, {
        "Cargo.toml": '[package]\nname = "demo"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n',
        "src/lib.rs": (
            "pub fn add(a: i32, b: i32) -> i32 { a + b }\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n"
            "    #[test]\n    fn adds() { assert_eq!(add(1, 2), 3); }\n"
            "    #[test]\n    fn wrong() { assert_eq!(add(2, 2), 5); }\n"
            "    #[test]\n    fn panics() { let v: Vec<i32> = vec![]; let _ = v[3]; }\n"
            "    #[test]\n    #[ignore]\n    fn later() {}\n}\n"
        ),
        "tests/integration.rs": "#[test]\nfn adds() { assert_eq!(demo::add(1, 1), 2); }\n",
    })
    env_target = tmp_path / "target"
    output = run(["cargo", "test", "--offline", "--no-fail-fast", "--target-dir", str(env_target)], tmp_path,
                 timeout=300)
    assert output.exit_code == 101
    assert detect_format(output) == "cargo"
    checks = {c.check_id: c for c in parse_gate_output(output)}
    assert checks["src/lib.rs::tests::adds"].status is CheckStatus.PASSED
    assert checks["tests/integration.rs::adds"].status is CheckStatus.PASSED
    wrong = checks["src/lib.rs::tests::wrong"]
    assert wrong.status is CheckStatus.FAILED
    assert wrong.location.startswith("src/lib.rs:9")
    assert "left: 4" in wrong.message and "right: 5" in wrong.message
    assert "index out of bounds" in checks["src/lib.rs::tests::panics"].message
    assert checks["src/lib.rs::tests::later"].status is CheckStatus.SKIPPED


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo not installed")
def test_real_cargo_build_error(tmp_path: Path) -> None:
    write(tmp_path, {
        "Cargo.toml": '[package]\nname = "demo2"\nversion = "0.1.0"\nedition = "2021"\n',
        "src/lib.rs": "pub fn add(a: i32, b: i32) -> i32 { a + \"b\" }\n",
    })
    output = run(["cargo", "test", "--offline", "--target-dir", str(tmp_path / "target")], tmp_path, timeout=300)
    found = failing(parse_gate_output(output))
    assert found, output.output
    assert all(c.check_id.startswith("cargo:E") and c.location.startswith("src/lib.rs:1") for c in found.values())
