"""Anti-hallucination checks: dependencies against a fake registry over real HTTP on 127.0.0.1,
imports against a real repository tree and environment, claimed paths against the changed files."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from onloop.gates.hallucination import (
    Finding,
    HttpRegistryClient,
    added_dependencies,
    check_claimed_paths,
    check_dependencies,
    check_imports,
    claimed_paths,
    find_spec_in,
    lock_file_names,
    normalise_name,
)
from onloop.gates.registry import CachedRegistryClient

KNOWN = {"/pypi/requests/json", "/pypi/pytest/json", "/left-pad", "/@scope%2Fwidget", "/api/v1/crates/serde",
         "/api/v1/crates/tokio"}


class FakeIndex(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        FakeIndex.hits.append(self.path)
        if self.path.startswith("/broken"):
            self.send_response(503)
        else:
            self.send_response(200 if self.path in KNOWN else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def index() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeIndex)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeIndex.hits = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def client_for(base: str, timeout: float = 5.0) -> HttpRegistryClient:
    return HttpRegistryClient({"pypi": base, "npm": base, "crates": base}, timeout=timeout)


PYPROJECT_BEFORE = '[project]\nname = "x"\ndependencies = ["requests>=2"]\n'
PYPROJECT_AFTER = (
    '[project]\nname = "x"\ndependencies = ["requests>=2", "requests-oauthlib-fastest>=1"]\n'
    '[project.optional-dependencies]\ndev = ["pytest>=8", "local @ file:///tmp/local.whl"]\n'
)


def test_added_names_per_manifest_kind() -> None:
    assert [d.name for d in added_dependencies("pyproject.toml", PYPROJECT_BEFORE, PYPROJECT_AFTER)] == [
        "pytest", "requests-oauthlib-fastest"]
    requirements = "requests==2.0\n-r base.txt\nblack[d]>=23  # fmt\n./local\n"
    assert [d.name for d in added_dependencies("requirements-dev.txt", "Requests\n", requirements)] == ["black"]
    assert [d.name for d in added_dependencies(
        "package.json", '{"dependencies": {"left-pad": "1"}}',
        '{"dependencies": {"left-pad": "1", "@scope/widget": "^2", "mine": "file:../mine"},'
        ' "devDependencies": {"lodahs": "4"}}')] == ["@scope/widget", "lodahs"]
    assert [d.name for d in added_dependencies(
        "crates/app/Cargo.toml", "[dependencies]\nserde = \"1\"\n",
        '[dependencies]\nserde = "1"\nlocal = { path = "../local" }\nfast = { package = "tokio", version = "1" }\n'
        '[dev-dependencies]\nserde_jsonn = "1"\n')] == ["serde_jsonn", "tokio"]
    assert added_dependencies("pyproject.toml", None, "not [ toml") == []


def test_dependencies_checked_against_the_registry(index: str) -> None:
    changes = [
        ("pyproject.toml", PYPROJECT_BEFORE, PYPROJECT_AFTER),
        ("package.json", "{}", '{"dependencies": {"left-pad": "1", "@scope/widget": "2", "lodahs": "4"}}'),
        ("Cargo.toml", "", '[dependencies]\nserde = "1"\nserde_jsonn = "1"\n'),
    ]
    findings = check_dependencies(changes, client_for(index))
    assert sorted((f.kind, f.category, f.subject) for f in findings) == [
        ("hallucination", "dependency", "lodahs"),
        ("hallucination", "dependency", "requests-oauthlib-fastest"),
        ("hallucination", "dependency", "serde_jsonn"),
    ]
    assert "/@scope%2Fwidget" in FakeIndex.hits  # scoped npm names are encoded as the registry expects
    assert all(isinstance(f, Finding) and f.evidence for f in findings)


def test_unreachable_registry_is_could_not_verify(index: str) -> None:
    # A closed port: connection refused. Nothing is reported as existing, nothing as made up.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    findings = check_dependencies([("requirements.txt", "", "requests\nnumpyy\n")], client_for(closed, timeout=2))
    assert {(f.kind, f.subject) for f in findings} == {("could_not_verify", "requests"), ("could_not_verify", "numpyy")}
    # A registry answering 503 is not a "no" either.
    assert client_for(index + "/broken").exists("pypi", "requests") is None


def test_cache_answers_offline_and_expires_misses(index: str, tmp_path: Path) -> None:
    now = [1000.0]
    cache_file = tmp_path / "registry.sqlite"
    cached = CachedRegistryClient(client_for(index), cache_file, ttl_missing=60, clock=lambda: now[0])
    assert cached.exists("pypi", "Requests") is True
    assert cached.exists("pypi", "nopez") is False
    hits = len(FakeIndex.hits)
    # A new client on the same file, pointing at nothing: answers come from the cache.
    offline = CachedRegistryClient(client_for("http://127.0.0.1:9", timeout=1), cache_file, ttl_missing=60,
                                   clock=lambda: now[0])
    assert offline.exists("pypi", "requests") is True
    assert offline.exists("pypi", "nopez") is False
    assert len(FakeIndex.hits) == hits
    now[0] += 120  # the miss expired; the registry cannot be reached: could not verify, not "missing"
    assert offline.exists("pypi", "nopez") is None
    assert offline.exists("pypi", "requests") is True


def test_default_cache_lives_under_onloop_home(index: str) -> None:
    import os

    cached = CachedRegistryClient(client_for(index))
    assert cached.path.is_relative_to(Path(os.environ["ONLOOP_HOME"]))


def test_imports_that_exist_nowhere(tmp_path: Path) -> None:
    (tmp_path / "src" / "mypkg").mkdir(parents=True)
    (tmp_path / "src" / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "helpers.py").write_text("")
    source = (
        "import os, json\nimport mypkg.sub\nimport helpers\nfrom . import sibling\nimport pydantic\n"
        "import yaml\nimport fastjsonparse_ultra\nfrom totally_made_up.thing import x\n"
        "try:\n    import ujson_maybe\nexcept ImportError:\n    ujson_maybe = None\n"
    )
    findings = check_imports({"src/mypkg/mod.py": source, "README.md": "import nothing"}, repo_root=tmp_path,
                             declared=["PyYAML>=6"])
    assert [f.subject for f in findings] == ["fastjsonparse_ultra", "totally_made_up"]
    assert all(f.kind == "hallucination" and f.category == "import" for f in findings)


def test_imports_the_code_had_before_are_not_the_agents(tmp_path: Path) -> None:
    source = "import legacy_missing_module\nimport brand_new_made_up\n"
    findings = check_imports({"a.py": source}, repo_root=tmp_path, already_imported={"legacy_missing_module"})
    assert [f.subject for f in findings] == ["brand_new_made_up"]


def test_imports_checked_in_another_interpreter(tmp_path: Path) -> None:
    installed = find_spec_in(sys.executable)
    assert installed("pydantic") is True
    assert installed("surely_not_installed_anywhere_42") is False
    findings = check_imports({"a.py": "import pydantic\nimport surely_not_installed_anywhere_42\n"},
                             repo_root=tmp_path, installed=installed)
    assert [f.subject for f in findings] == ["surely_not_installed_anywhere_42"]


FINAL_MESSAGE = """Done! I fixed the rounding bug in `src/billing/invoice.py` and updated tests/test_invoice.py.
I read README.md and docs/design.md to understand the context (see https://example.com/x.py).
Version 1.2.3 is unaffected, e.g. the old path.

Files changed:
- src/billing/tax.py
- CHANGELOG.md

I also looked at `config.load` but left it alone."""


def test_claimed_paths_extraction() -> None:
    assert claimed_paths(FINAL_MESSAGE) == [
        "src/billing/invoice.py", "tests/test_invoice.py", "src/billing/tax.py", "CHANGELOG.md"]


def test_claimed_paths_checked_against_the_diff() -> None:
    changed = ["src/billing/invoice.py", "tests/test_invoice.py", "src/billing/tax.py"]
    findings = check_claimed_paths(FINAL_MESSAGE, changed)
    assert [(f.kind, f.category, f.subject) for f in findings] == [("hallucination", "claimed_path", "CHANGELOG.md")]
    assert check_claimed_paths(FINAL_MESSAGE, [*changed, "CHANGELOG.md"]) == []
    # An abbreviated claim matches the full path in the diff.
    assert check_claimed_paths("Updated `invoice.py`.", ["src/billing/invoice.py"]) == []


def test_names_compare_the_way_each_registry_does() -> None:
    assert normalise_name("pypi", "Zope.Interface") == normalise_name("pypi", "zope_interface") == "zope-interface"
    assert normalise_name("crates", "Serde-JSON") == normalise_name("crates", "serde_json") == "serde_json"
    assert normalise_name("npm", "JSONStream") == "JSONStream"  # npm's legacy capitals are part of the name


POETRY_LOCK = '[[package]]\nname = "Requests"\nversion = "2.31.0"\n\n[[package]]\nname = "zope.interface"\n'
PIPFILE_LOCK = '{"_meta": {}, "default": {"flask": {"version": "==3.0"}}, "develop": {"black": {}}}'
PACKAGE_LOCK_V3 = ('{"name": "app", "lockfileVersion": 3, "packages": {"": {"name": "app"}, '
                   '"node_modules/left-pad": {}, "node_modules/@scope/widget": {}, '
                   '"node_modules/left-pad/node_modules/is-odd": {}}}')
PACKAGE_LOCK_V1 = '{"lockfileVersion": 1, "dependencies": {"a": {"dependencies": {"b": {"version": "1"}}}}}'
YARN_CLASSIC = ('# yarn lockfile v1\n\n"@babel/core@^7.0.0", "@babel/core@^7.1.0":\n  version "7.1.0"\n\n'
                'lodash@^4.17.21:\n  version "4.17.21"\n  dependencies:\n    nested "1"\n')
YARN_BERRY = '__metadata:\n  version: 6\n\n"lodash@npm:^4.17.21":\n  version: 4.17.21\n'
PNPM_V5 = "lockfileVersion: 5.4\npackages:\n  /lodash/4.17.21:\n    dev: false\n  /@babel/core/7.0.0_react@18.0.0:\n"
PNPM_V6 = "lockfileVersion: '6.0'\npackages:\n  /@types/node@20.1.0:\n    resolution: {}\n  /ms@2.1.3(x@1.0.0):\n"
PNPM_V9 = "lockfileVersion: '9.0'\nimporters:\n  .:\n    dependencies:\npackages:\n  'chalk@5.3.0':\n    x: 1\n"
CARGO_LOCK = 'version = 3\n\n[[package]]\nname = "serde-json"\nversion = "1.0.0"\n'


@pytest.mark.parametrize(("path", "content", "expected"), [
    ("poetry.lock", POETRY_LOCK, {("pypi", "requests"), ("pypi", "zope-interface")}),
    ("sub/uv.lock", POETRY_LOCK, {("pypi", "requests"), ("pypi", "zope-interface")}),
    ("Pipfile.lock", PIPFILE_LOCK, {("pypi", "flask"), ("pypi", "black")}),
    ("requirements-lock.txt", "Requests==2.31.0\n-r other.txt\nidna==3.6  # via requests\n",
     {("pypi", "requests"), ("pypi", "idna")}),
    ("package-lock.json", PACKAGE_LOCK_V3, {("npm", "left-pad"), ("npm", "@scope/widget"), ("npm", "is-odd")}),
    ("package-lock.json", PACKAGE_LOCK_V1, {("npm", "a"), ("npm", "b")}),
    ("yarn.lock", YARN_CLASSIC, {("npm", "@babel/core"), ("npm", "lodash")}),
    ("yarn.lock", YARN_BERRY, {("npm", "lodash")}),
    ("pnpm-lock.yaml", PNPM_V5, {("npm", "lodash"), ("npm", "@babel/core")}),
    ("pnpm-lock.yaml", PNPM_V6, {("npm", "@types/node"), ("npm", "ms")}),
    ("pnpm-lock.yaml", PNPM_V9, {("npm", "chalk")}),
    ("Cargo.lock", CARGO_LOCK, {("crates", "serde_json")}),
    ("poetry.lock", "not [ toml", set()),
    ("package-lock.json", "{broken", set()),
    ("README.md", "lodash@^4:", set()),
])
def test_lock_file_names(path: str, content: str, expected: set[tuple[str, str]]) -> None:
    assert lock_file_names(path, content) == expected


# What agents say when their edits did not happen: none of these claims a completed edit of calc.py.
NOT_CLAIMS = [
    "I could not change calc.py: permission to edit it was denied.",
    "I couldn't modify calc.py because the write was refused.",
    "I was unable to update `calc.py`.",
    "I did not touch calc.py.",
    "I didn't edit calc.py, as you asked.",
    "I wasn't able to write calc.py.",
    "I failed to patch calc.py.",
    "I'd need permission to edit calc.py to apply the fix.",
    "The fix should be applied to calc.py by someone with write access.",
    "calc.py still needs to be changed: add() returns a - b.",
    "My attempt to rewrite calc.py was blocked by the guard hook.",
    "The edit to calc.py was denied.",
    "I tried to edit calc.py, but the permission system said no.",
    "calc.py was not modified.",
    "I never changed calc.py.",
    "I have not yet updated calc.py.",
    "I changed nothing in calc.py.",
    "If you update calc.py so that add() returns a + b, the test passes.",
    "Suggested change for calc.py: return a + b.",
    "Without permission I cannot fix calc.py.",
    "I would have updated calc.py, had the write been allowed.",
    "Files I could not change:\n- calc.py\n- tests/test_calc.py",
]


@pytest.mark.parametrize("message", NOT_CLAIMS)
def test_negated_and_hypothetical_edits_are_not_claims(message: str) -> None:
    assert claimed_paths(message) == []
    assert check_claimed_paths(message, []) == []


@pytest.mark.parametrize(("message", "claimed"), [
    ("I fixed calc.py but could not change tests/test_calc.py.", ["calc.py"]),
    ("I couldn't edit setup.cfg, so I updated pyproject.toml instead.", ["pyproject.toml"]),
    ("Although I was unable to run the tests, I fixed calc.py.", ["calc.py"]),
    ("I did not touch README.md and rewrote calc.py from scratch.", ["calc.py"]),
    ("calc.py and utils.py were updated; docs/api.md was not.", ["calc.py", "utils.py"]),
    ("I managed to fix calc.py after all.", ["calc.py"]),
    ("I was able to edit calc.py once the hook allowed it.", ["calc.py"]),
    ("- Fix add() in calc.py\n- Add tests/test_mul.py", ["calc.py", "tests/test_mul.py"]),
    ("Changes:\n- calc.py\n- calc_test.py: could not edit (permission denied)", ["calc.py"]),
    ("I updated calc.py, utils.py and tests/test_calc.py.", ["calc.py", "utils.py", "tests/test_calc.py"]),
])
def test_completed_edits_are_claims_next_to_ones_that_did_not_happen(message: str, claimed: list[str]) -> None:
    assert claimed_paths(message) == claimed


def test_a_verb_inside_a_path_is_not_a_verb() -> None:
    assert claimed_paths("I read src/update.py and docs/changes.md.") == []


def test_the_real_final_message_of_a_run_whose_writes_were_denied() -> None:
    """Claude Code 2.1.197 with Edit and Write denied (tests/data/agent-cli/claude-permission-denied.jsonl):
    the run ends "success", and its final message is no false claim that calc.py changed."""
    import json

    data = Path(__file__).resolve().parent.parent / "data" / "agent-cli" / "claude-permission-denied.jsonl"
    result = json.loads(data.read_text().splitlines()[-1])
    assert [d["tool_name"] for d in result["permission_denials"]] == ["Edit", "Write"]
    assert check_claimed_paths(result["result"], []) == []
