"""The diff audit on real git worktrees: every finding kind, several variants each."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from policy_helpers import git

from onloop.policy.audit import AuditReport, audit_changes, compare_tests, is_test_path
from onloop.policy.model import Policy

BASE_TEST = '''import pytest


def test_add():
    assert 1 + 1 == 2
    assert 2 + 2 == 4


def test_sub():
    assert 3 - 1 == 2


class TestThing:
    def test_method(self):
        self.assertEqual(1, 1)
'''

JS_TEST = """describe('math', () => {
  it('adds', () => { expect(1 + 1).toBe(2); });
  it('subs', () => { expect(2 - 1).toBe(1); });
});
"""

RS_TEST = """#[cfg(test)]
mod tests {
    #[test]
    fn adds() { assert_eq!(1 + 1, 2); }
    #[test]
    fn subs() { assert_eq!(2 - 1, 1); }
}
"""

FILES = {
    "src/app.py": "def add(a, b):\n    return a + b\n",
    "tests/test_math.py": BASE_TEST,
    "web/math.test.js": JS_TEST,
    "crate/src/lib.rs": RS_TEST,
    ".github/workflows/ci.yml": "on: push\n",
    "app/migrations/0001_init.py": "# initial\n",
    "poetry.lock": "# lock\n",
    "onloop.toml": "[run]\n",
    "pyproject.toml": "[tool.pytest.ini_options]\naddopts = \"-ra\"\n",
}


@pytest.fixture
def wt(make_repo) -> Path:  # type: ignore[no-untyped-def]
    return make_repo(FILES)


def audit(wt: Path, message: str = "", **kw: int) -> AuditReport:
    index_before = (wt / ".git" / "index").read_bytes()
    report = audit_changes(wt, "HEAD", Policy(), message=message, **kw)
    assert (wt / ".git" / "index").read_bytes() == index_before  # the real index is never touched
    return report


def write(wt: Path, rel: str, text: str) -> None:
    path = wt / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def kinds(report: AuditReport) -> list[str]:
    return [f.kind for f in report.findings]


def test_clean_change_has_no_findings(wt: Path) -> None:
    write(wt, "src/app.py", "def add(a, b):\n    return b + a\n")
    write(wt, "src/new.py", "VALUE = 3\n")
    write(wt, "tests/test_new.py", "def test_new():\n    assert 3 == 3\n")
    report = audit(wt)
    assert report.findings == ()
    assert not report.breached
    assert set(report.changed) == {"src/app.py", "src/new.py", "tests/test_new.py"}


def test_the_lead_can_still_commit_after_the_audit(wt: Path) -> None:
    write(wt, "src/new.py", "VALUE = 3\n")
    (wt / "src/app.py").unlink()
    audit(wt)
    git(wt, "add", "-A")
    git(wt, "commit", "-qm", "iteration")
    assert git(wt, "status", "--porcelain") == ""
    assert "src/new.py" in git(wt, "show", "--name-only", "HEAD")


# -- protected paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "path"),
    [
        ("modify", ".github/workflows/ci.yml"),
        ("add", ".github/workflows/evil.yml"),
        ("delete", "app/migrations/0001_init.py"),
        ("add", "deep/nested/migrations/0002.py"),
        ("modify", "poetry.lock"),
        ("add", "sub/yarn.lock"),
        ("modify", "onloop.toml"),
        ("rename", "onloop.toml"),
    ],
)
def test_protected_paths(wt: Path, action: str, path: str) -> None:
    if action == "delete":
        (wt / path).unlink()
    elif action == "rename":
        os.rename(wt / path, wt / "renamed.toml")
    else:
        write(wt, path, "changed\n")
    report = audit(wt)
    assert "protected_path" in kinds(report)
    assert report.breached
    finding = next(f for f in report.findings if f.kind == "protected_path")
    assert finding.path == path and "protected pattern" in finding.evidence


# -- escapes ----------------------------------------------------------------------------------------


def test_symlink_escapes(wt: Path) -> None:
    os.symlink("/etc/passwd", wt / "abs_link")
    os.symlink("../../outside", wt / "src" / "rel_link")
    (wt / "inner").mkdir()
    os.symlink("../..", wt / "inner" / "up")
    os.symlink("app.py", wt / "src" / "fine_link")  # inside the worktree: fine
    report = audit(wt)
    escaped = {f.path for f in report.findings if f.kind == "escape"}
    assert escaped == {"abs_link", "src/rel_link", "inner/up"}


def test_symlink_through_an_escaping_link(wt: Path) -> None:
    os.symlink("/etc", wt / "etc")
    os.symlink("etc/passwd", wt / "passwd")  # lexically inside, really outside
    report = audit(wt)
    assert {f.path for f in report.findings if f.kind == "escape"} == {"etc", "passwd"}


def test_hard_links(wt: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside-secret"
    outside.write_text("host data\n")
    os.link(outside, wt / "alias.txt")
    os.link(wt / "src" / "app.py", wt / "src" / "app_alias.py")
    report = audit(wt)
    escaped = {f.path for f in report.findings if f.kind == "escape"}
    assert escaped == {"alias.txt", "src/app_alias.py"}  # src/app.py itself is unchanged, so not audited
    assert all("hard link" in f.evidence for f in report.findings if f.kind == "escape")


# -- tests deleted, skipped, weakened ---------------------------------------------------------------


def test_test_file_deleted(wt: Path) -> None:
    (wt / "tests/test_math.py").unlink()
    (wt / "web/math.test.js").unlink()
    report = audit(wt)
    found = {f.path: f.evidence for f in report.findings if f.kind == "test_deleted"}
    assert found == {"tests/test_math.py": "test file deleted, it held 3 tests",
                     "web/math.test.js": "test file deleted, it held 2 tests"}


def test_test_functions_removed(wt: Path) -> None:
    write(wt, "tests/test_math.py", BASE_TEST.replace("def test_sub():\n    assert 3 - 1 == 2\n", ""))
    write(wt, "web/math.test.js", JS_TEST.replace("  it('subs', () => { expect(2 - 1).toBe(1); });\n", ""))
    write(wt, "crate/src/lib.rs", RS_TEST.replace("    #[test]\n    fn subs() { assert_eq!(2 - 1, 1); }\n", ""))
    report = audit(wt)
    found = {f.path: f.evidence for f in report.findings if f.kind == "test_deleted"}
    assert found["tests/test_math.py"] == "test functions removed: test_sub"
    assert found["web/math.test.js"] == "2 tests before, 1 after"
    assert "crate/src/lib.rs" not in found  # not a test path; Rust unit tests live in src (known gap)


def test_test_renamed_out_of_collection(wt: Path) -> None:
    os.rename(wt / "tests/test_math.py", wt / "tests/math_helpers.py")
    assert "test_deleted" in kinds(audit(wt))


@pytest.mark.parametrize(
    "edit",
    [
        ("def test_add():", "@pytest.mark.skip(reason='flaky')\ndef test_add():"),
        ("def test_add():", "@pytest.mark.xfail\ndef test_add():"),
        ("def test_add():", "@pytest.mark.skipif(True, reason='x')\ndef test_add():"),
        ("    assert 1 + 1 == 2\n", "    pytest.skip('later')\n    assert 1 + 1 == 2\n"),
        ("class TestThing:", "@unittest.skip('no')\nclass TestThing:"),
    ],
)
def test_python_skips(wt: Path, edit: tuple[str, str]) -> None:
    write(wt, "tests/test_math.py", BASE_TEST.replace(*edit))
    report = audit(wt)
    assert "test_skipped" in kinds(report)
    assert report.breached


@pytest.mark.parametrize(
    "edit", [("it('adds'", "it.skip('adds'"), ("it('adds'", "it.only('adds'"),
             ("describe('math'", "describe.only('math'"), ("it('subs'", "xit('subs'")],
)
def test_js_skips(wt: Path, edit: tuple[str, str]) -> None:
    write(wt, "web/math.test.js", JS_TEST.replace(*edit))
    assert "test_skipped" in kinds(audit(wt))


@pytest.mark.parametrize(
    ("rel", "text"),
    [
        ("tests/test_math.py",
         BASE_TEST.replace("import pytest\n", "import pytest\nfrom unittest import skip as later\n")),
        ("tests/test_math.py",
         BASE_TEST.replace("    assert 3 - 1 == 2\n", "    raise unittest.SkipTest('x')\n    assert 3 - 1 == 2\n")),
        ("tests/__init__.py", "import os\n\nos._exit(0)\n"),
        ("tests/__init__.py", "def load_tests(loader, tests, pattern):\n    return None\n"),
        ("tests/conftest.py", "def pytest_ignore_collect(collection_path):\n    return True\n"),
    ],
)
def test_skip_evasions(wt: Path, rel: str, text: str) -> None:
    write(wt, rel, text)
    report = audit(wt)
    assert "test_skipped" in kinds(report), report.findings


def test_rust_ignore_and_config_narrowing(wt: Path) -> None:
    write(wt, "tests/it.rs", "#[test]\n#[ignore]\nfn slow() {}\n")
    write(wt, "pyproject.toml", FILES["pyproject.toml"].replace('"-ra"', '"-ra --deselect tests/test_math.py"'))
    write(wt, "tests/conftest.py", "collect_ignore = ['test_math.py']\n")
    report = audit(wt)
    assert {f.path for f in report.findings if f.kind == "test_skipped"} == {
        "tests/it.rs", "pyproject.toml", "tests/conftest.py"}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    assert 2 + 2 == 4\n", "", "test_add: 2 assertions before, 1 after"),
        ("    assert 3 - 1 == 2\n", "    assert True\n", "test_sub: 1 assertions before, 0 after"),
        ("        self.assertEqual(1, 1)\n", "        pass\n", "TestThing.test_method: 1 assertions before, 0 after"),
        ("    assert 1 + 1 == 2\n    assert 2 + 2 == 4\n",
         "    try:\n        assert 1 + 1 == 2\n        assert 2 + 2 == 4\n    except Exception:\n        pass\n",
         "test_add: broad except added around test code"),
        ("    assert 3 - 1 == 2\n", "    assert 3 - 1 == 2\n    assert 1\n",
         "test_sub: constant assertion added (assert True or similar)"),
    ],
)
def test_assertions_weakened(wt: Path, old: str, new: str, expected: str) -> None:
    write(wt, "tests/test_math.py", BASE_TEST.replace(old, new))
    report = audit(wt)
    evidence = [f.evidence for f in report.findings if f.kind == "assertion_weakened"]
    assert expected in evidence


def test_js_assertions_removed(wt: Path) -> None:
    write(wt, "web/math.test.js", JS_TEST.replace("expect(2 - 1).toBe(1);", ""))
    assert "assertion_weakened" in kinds(audit(wt))


def test_adding_tests_and_assertions_is_fine(wt: Path) -> None:
    write(wt, "tests/test_math.py", BASE_TEST + "\n\ndef test_more():\n    assert 5 == 5\n")
    assert audit(wt).findings == ()


# -- secrets ----------------------------------------------------------------------------------------


SECRETS = {
    "aws": 'AWS_KEY = "AKIAIOSFODNN7EXAMPLE"\n',
    "github": "token = ghp_abcdefghijklmnopqrstuvwxyz0123456789AB\n",
    "openai": "OPENAI = 'sk-proj-abcDEF1234567890abcdEFGH'\n",
    "anthropic": "key: sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345\n",
    "slack": "hook xoxb-1234567890-abcdefghij\n",
    "pem": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    "password": 'DB = {"password": "hunter2hunter2"}\n',
}


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_secrets_in_files_are_found_and_never_echoed(wt: Path, name: str) -> None:
    write(wt, "src/config.py", SECRETS[name])
    report = audit(wt)
    secret = [f for f in report.findings if f.kind == "secret"]
    assert secret and report.breached
    for finding in secret:
        assert "REDACTED" in finding.evidence
        for token in ("AKIAIOSFODNN7EXAMPLE", "ghp_abc", "sk-proj-abc", "sk-ant-api03", "xoxb-123",
                      "b3BlbnNzaC1rZXktdjEAAAA", "hunter2hunter2"):
            assert token not in finding.evidence


def test_secret_in_message(wt: Path) -> None:
    write(wt, "src/app.py", "x = 1\n")
    report = audit(wt, message="done. btw the key is sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345")
    finding = next(f for f in report.findings if f.kind == "secret")
    assert finding.path == "<message>" and "sk-ant-api03" not in finding.evidence


def test_high_entropy_token_only_warns(wt: Path) -> None:
    write(wt, "src/blob.py", 'MYSTERY = "Zx8vQ2mN7pL4kR9tW1yB6cF3hJ5gD0sA"\n')
    report = audit(wt)
    assert [(f.kind, f.severity) for f in report.findings] == [("secret", "warn")]
    assert not report.breached


def test_existing_secret_lines_are_not_reported_again(wt: Path) -> None:
    write(wt, "src/app.py", FILES["src/app.py"] + "# unrelated\n")
    assert audit(wt).findings == ()


# -- blobs ------------------------------------------------------------------------------------------


def test_oversized_and_binary(wt: Path) -> None:
    (wt / "big.txt").write_text("a" * 2000)
    (wt / "data.bin").write_bytes(b"\x00\x01\x02 binary")
    (wt / "ok.txt").write_text("small")
    report = audit(wt, max_file_bytes=1000)
    assert {(f.kind, f.path) for f in report.findings} == {("oversized", "big.txt"), ("binary", "data.bin")}


def test_default_size_cap_is_one_megabyte(wt: Path) -> None:
    (wt / "big.txt").write_text("a" * 1_000_001)
    (wt / "fits.txt").write_text("a" * 999_999)
    assert [f.path for f in audit(wt).findings] == ["big.txt"]


def test_ignored_files_are_not_audited(wt: Path) -> None:
    write(wt, ".gitignore", "build/\n")
    (wt / "build").mkdir()
    (wt / "build" / "out.bin").write_bytes(b"\x00" * 10)
    assert audit(wt).findings == ()


def test_audit_against_an_older_base(wt: Path) -> None:
    base = git(wt, "rev-parse", "HEAD").strip()
    write(wt, ".github/workflows/ci.yml", "on: pull_request\n")
    git(wt, "add", "-A")
    git(wt, "commit", "-qm", "sneaky")
    report = audit_changes(wt, base, Policy())
    assert "protected_path" in kinds(report)


def test_unknown_base_is_a_workspace_error(wt: Path) -> None:
    from onloop.errors import WorkspaceError

    with pytest.raises(WorkspaceError):
        audit_changes(wt, "no-such-ref", Policy())


# -- units ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [("tests/test_a.py", True), ("pkg/a_test.py", True), ("src/a.spec.ts", True), ("x/__tests__/a.js", True),
     ("cmd/main_test.go", True), ("tests/it.rs", True), ("src/app.py", False), ("docs/testing.md", False),
     ("testdata/x.json", False), ("tests/helpers.py", False)],
)
def test_is_test_path(path: str, expected: bool) -> None:
    assert is_test_path(path) is expected


def test_unparsable_python_falls_back_to_counting() -> None:
    found = compare_tests("tests/test_x.py", "def test_a():\n    assert 1 == 1\n", "def helper(:\n")
    assert ("test_deleted", "1 tests before, 0 after") in found


def test_subprocess_git_is_bounded() -> None:
    # audit_changes shells out to git; a stuck git must not hang the loop forever.
    import onloop.policy.audit as module

    assert module._GIT_TIMEOUT <= 300
    assert subprocess.run(["git", "--version"], capture_output=True, timeout=10).returncode == 0
