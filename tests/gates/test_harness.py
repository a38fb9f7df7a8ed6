"""What the harness is, and which changes to it the audit refuses."""

from __future__ import annotations

import json

import pytest

from onloop.config import parse_config
from onloop.gates.harness import Harness, harness_breaches, harness_for, section_change

HARNESS = [
    "conftest.py", "tests/conftest.py", "src/pkg/conftest.py", "pytest.ini", "tox.ini", "noxfile.py",
    "tests/__init__.py", "tests/helpers.py", "tests/data/expected.json", "tests/fixtures/input.txt",
    "test/utils.py", "src/pkg/testdata/golden.out", "__tests__/__snapshots__/a.test.js.snap",
    "jest.config.js", "vitest.config.ts", ".coveragerc",
]
NOT_HARNESS = [
    "calc.py", "src/pkg/core.py", "tests/test_calc.py", "tests/unit/test_api.py", "tests/calc_test.py",
    "specs/README.md", "specs/api.md", "README.md", "pyproject.toml", "setup.cfg", "package.json",
    "docs/testing.md", "src/tests_helpers_not_a_dir.py",
]


@pytest.mark.parametrize("path", HARNESS)
def test_harness_files(path: str) -> None:
    assert Harness().is_harness(path)


@pytest.mark.parametrize("path", NOT_HARNESS)
def test_not_harness_files(path: str) -> None:
    assert not Harness().is_harness(path)


def test_the_gates_add_their_own_harness() -> None:
    config = parse_config(
        '[gates.tests]\ncommand = ["./scripts/run_tests.sh"]\nharness = ["golden/**"]\n'
        '[gates.build]\ncommand = ["make", "check"]\n'
        '[gates.types]\ncommand = ["python3", "-m", "mypy", "src/app.py"]\n'
        '[gates.compile]\ncommand = ["python3", "tools/check.py", "calc.py"]\n'
        '[gates.port]\nkind = "differential"\nreference = ["python3", "ref.py", "{input}"]\n'
        'candidate = ["./port", "{input}"]\ninputs = ["cases/*.txt"]\n')
    files = {
        "scripts/run_tests.sh": "#!/bin/sh\nset -e\nbash scripts/lib/env.sh && python3 -m pytest\n",
        "scripts/lib/env.sh": "export A=1\n",
        "Makefile": "check:\n\t@./scripts/check.sh --fast | tee log\n\tpython3 -m mypy src/app.py\n",
        "build/rules.mk": "", "scripts/check.sh": "env CI=1 python3 tools/lint.py src/\n", "tools/lint.py": "",
        "tools/check.py": "", "ref.py": "", "src/app.py": "", "calc.py": "",
    }

    harness = harness_for(config, files, files.get)

    for path in ("scripts/run_tests.sh", "scripts/lib/env.sh", "golden/a.out", "Makefile", "build/rules.mk",
                 "scripts/check.sh", "tools/lint.py", "tools/check.py", "cases/one.txt"):
        assert harness.is_harness(path), path
    for path in ("ref.py", "src/app.py", "calc.py"):
        assert not harness.is_harness(path), f"{path}: an operand is not the program a gate runs"


def test_changes_to_existing_harness_files_are_breaches_in_every_mode() -> None:
    changes = [("tests/conftest.py", "# base\n", "# agent\n"), ("tests/data/expected.json", "5", None)]
    in_base = {"tests/conftest.py": True, "tests/data/expected.json": True}

    for harness in (Harness(), Harness(extend=True), Harness(extend=True, new_config=True)):
        found = harness_breaches(harness, changes, in_base)
        assert [c.path for c in found] == ["tests/conftest.py", "tests/data/expected.json"]
        assert "deleted" in found[1].evidence


def test_new_harness_files_depend_on_the_policy() -> None:
    changes = [("tests/helpers.py", None, "# new\n"), ("src/conftest.py", None, "# new\n")]

    assert [c.path for c in harness_breaches(Harness(), changes, {})] == ["tests/helpers.py", "src/conftest.py"]
    assert [c.path for c in harness_breaches(Harness(extend=True), changes, {})] == ["src/conftest.py"]
    assert harness_breaches(Harness(extend=True, new_config=True), changes, {}) == []


PYPROJECT = '[project]\nname = "x"\ndependencies = []\n\n[tool.pytest.ini_options]\naddopts = "-q"\n'


@pytest.mark.parametrize(("name", "before", "after", "changed"), [
    ("pyproject.toml", PYPROJECT, PYPROJECT.replace('dependencies = []', 'dependencies = ["attrs"]'), False),
    ("pyproject.toml", PYPROJECT, PYPROJECT.replace('"-q"', '"-q -p myplugin"'), True),
    ("pyproject.toml", PYPROJECT, PYPROJECT.replace("[tool.pytest.ini_options]\naddopts = \"-q\"\n", ""), True),
    ("pyproject.toml", PYPROJECT, PYPROJECT + "\n[tool.coverage.report]\nfail_under = 0\n", True),
    ("pyproject.toml", PYPROJECT, "not [ toml", True),
    ("setup.cfg", "[metadata]\nname = x\n[tool:pytest]\naddopts = -q\n",
     "[metadata]\nname = y\n[tool:pytest]\naddopts = -q\n", False),
    ("setup.cfg", "[metadata]\nname = x\n", "[metadata]\nname = x\n[tool:pytest]\naddopts = --deselect t.py\n", True),
    ("package.json", json.dumps({"scripts": {"test": "jest", "build": "tsc"}}),
     json.dumps({"scripts": {"test": "jest", "build": "tsc -b"}}), False),
    ("package.json", json.dumps({"scripts": {"test": "jest"}}), json.dumps({"scripts": {"test": "echo ok"}}), True),
    ("package.json", json.dumps({"name": "x"}), json.dumps({"name": "x", "jest": {"testMatch": []}}), True),
])
def test_sectioned_files_are_compared_by_their_test_sections(name: str, before: str, after: str,
                                                            changed: bool) -> None:
    assert (section_change(name, before, after) is not None) is changed
