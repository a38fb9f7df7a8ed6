"""The worktree scan: every oddity an agent can leave is reported, by lstat only, and the scan never raises.

The oddities are built by the same functions the workspace tests use (tests/test_workspace.py), in a
real run worktree made by `create_worktree`. The unreadable cases run as uid 65534 (see `as_nobody`).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from tests.test_workspace import (
    KEEP,
    ODDITIES,
    as_nobody,
    lock_things,
    make_worktree,
    nobody_dir,  # noqa: F401  (a fixture, used by name)
    run_git,
)

from onloop.policy.audit import audit_changes
from onloop.policy.model import Policy
from onloop.policy.worktree_scan import git_refuses, name_problems, scan_worktree, shown
from onloop.workspace import head_commit

CAP = 1_000_000
EXPECTED: dict[str, set[tuple[str, str]]] = {
    "nested_empty_repo": {("nested_repository", "vendor/.git")},
    "nested_repo_with_commit": {("nested_repository", "inner/.git")},
    "git_file_below_root": {("nested_repository", "pkg/.git")},
    "repo_in_tracked_dir": {("nested_repository", "src/.git")},
    "fifo": {("special_file", "pipe")},
    "unix_socket": {("special_file", "sock")},
    "char_device": {("special_file", "null")},
    "sparse_new_file": {("oversized", "huge.bin")},
    "sparse_tracked_file": {("oversized", "a.txt")},
    "odd_names": {("odd_name", repr(name)) for name in (
        "new\nline.txt", "tab\there.txt", "zero\u200bwidth.txt", "evil\u202etxt.py", "trailing.txt ",
        " leading.txt", "bad\udcff.txt", "bell\x07.txt")},
    "git_refused_names": {("odd_name", ".GIT"), ("odd_name", "git~1"), ("odd_name", ".gitmodules")},
    "permission_changes": set(),  # as root nothing is unreadable; the unprivileged case is below
    "ignored_files": set(),
    "tracked_edits": set(),
}


@pytest.fixture
def wt(tmp_path: Path) -> Path:
    return make_worktree(tmp_path)[0]


def kinds_and_paths(worktree: Path) -> set[tuple[str, str]]:
    return {(f.kind, f.path) for f in scan_worktree(worktree, max_file_bytes=CAP, keep=KEEP)}


@pytest.mark.parametrize("oddity", list(ODDITIES))
def test_each_oddity_is_reported(wt: Path, oddity: str) -> None:
    if oddity == "char_device" and os.geteuid() != 0:
        pytest.skip("creating a device node needs root")
    ODDITIES[oddity](wt)
    assert kinds_and_paths(wt) == EXPECTED[oddity]


def test_a_plain_worktree_has_no_findings_and_its_own_git_pointer_is_skipped(wt: Path) -> None:
    assert (wt / ".git").is_file()
    assert scan_worktree(wt, max_file_bytes=CAP) == []


def test_findings_are_blocking_and_odd_evidence_is_escaped(wt: Path) -> None:
    ODDITIES["odd_names"](wt)
    findings = scan_worktree(wt, max_file_bytes=CAP)
    assert findings and all(f.severity == "block" for f in findings)
    newline = next(f for f in findings if "new" in f.path)
    assert "\n" not in newline.path + newline.evidence and "control character" in newline.evidence
    for finding in findings:
        str(finding).encode("utf-8")  # storable: no surrogate survives into a finding


def test_the_sparse_file_is_never_read(wt: Path) -> None:
    ODDITIES["sparse_new_file"](wt)
    started = time.perf_counter()
    findings = scan_worktree(wt, max_file_bytes=CAP)
    assert time.perf_counter() - started < 1
    assert "107,374,182,400 bytes" in findings[0].evidence and "not read" in findings[0].evidence


def test_keep_globs_are_not_scanned(wt: Path) -> None:
    os.mkfifo(wt / ".venv" / "pipe")
    os.mkfifo(wt / "web" / "node_modules" / "pipe")
    assert kinds_and_paths(wt) == set()
    findings = scan_worktree(wt, max_file_bytes=CAP)
    assert {f.path for f in findings} == {".venv/pipe", "web/node_modules/pipe"}


def test_a_glob_ending_in_slash_keeps_only_a_directory(wt: Path) -> None:
    os.mkfifo(wt / "cache")
    (wt / "data").mkdir()
    os.mkfifo(wt / "data" / "pipe")
    found = scan_worktree(wt, max_file_bytes=CAP, keep=("cache/", "data/"))
    assert [(f.kind, f.path) for f in found] == [("special_file", "cache")]


def test_symlinks_are_never_followed(wt: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "pipe")
    with open(outside / "huge", "wb") as file:
        file.truncate(10 * CAP)
    (wt / "out").symlink_to(outside)
    (wt / "big").symlink_to(outside / "huge")
    (wt / "loop").symlink_to("loop")
    assert scan_worktree(wt, max_file_bytes=CAP) == []


def test_the_number_of_findings_is_capped_and_the_last_one_says_so(wt: Path) -> None:
    for i in range(10):
        os.mkfifo(wt / f"pipe{i}")
    findings = scan_worktree(wt, max_file_bytes=CAP, limit=3)
    assert len(findings) == 3
    assert "scan stopped after 3 findings" in findings[-1].evidence
    assert "scan stopped" not in findings[0].evidence
    assert len(scan_worktree(wt, max_file_bytes=CAP, limit=10)) == 10
    assert "scan stopped" not in scan_worktree(wt, max_file_bytes=CAP, limit=10)[-1].evidence


def test_a_nested_repository_is_not_descended_into(wt: Path) -> None:
    ODDITIES["nested_repo_with_commit"](wt)
    os.mkfifo(wt / "inner" / ".git" / "pipe")
    assert kinds_and_paths(wt) == {("nested_repository", "inner/.git")}


def test_a_missing_worktree_gives_no_findings_and_no_error(tmp_path: Path) -> None:
    assert scan_worktree(tmp_path / "gone", max_file_bytes=CAP) == []


def test_scan_cost_on_five_thousand_files(tmp_path: Path) -> None:
    """Not a benchmark (benchmarks/worktree_scan is): a loose bound that catches an accidental read."""
    for d in range(50):
        folder = tmp_path / f"d{d}"
        folder.mkdir()
        for f in range(100):
            (folder / f"f{f}.py").write_text("x = 1\n")
    started = time.perf_counter()
    assert scan_worktree(tmp_path, max_file_bytes=CAP) == []
    assert time.perf_counter() - started < 2


# -- names ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "words"), [
    ("plain.py", []),
    ("ünïcödé and spaces.txt", []),
    ("a\nb", ["a control character"]),
    ("a\tb", ["a control character"]),
    ("zero\u200bwidth", ["a format character (zero-width or bidi)"]),
    ("rtl\u202eoverride", ["a format character (zero-width or bidi)"]),
    ("line\u2028sep", ["a line separator"]),
    ("bad\udcff", ["bytes that are not valid UTF-8"]),
    ("trailing ", ["leading or trailing whitespace"]),
    ("\u00a0nbsp", ["leading or trailing whitespace"]),
])
def test_name_problems(name: str, words: list[str]) -> None:
    assert name_problems(name) == words


NAMES_FOR_GIT = [".GIT", ".Git", ".git.", ".git ", "git~1", "GIT~1", "git~1. .", ".git::$DATA", ".gitx", ".git.x",
                 "xgit~1", "git~12", ".gitignore", ".gitmodules", "gitmod~1", "normal"]


@pytest.mark.parametrize("name", NAMES_FOR_GIT)
def test_git_refuses_agrees_with_git_itself(tmp_path: Path, name: str) -> None:
    run_git(tmp_path, "init", "-q")
    (tmp_path / name).write_text("x\n")
    refused = subprocess.run(["git", "add", "-A"], cwd=tmp_path, capture_output=True).returncode != 0
    assert git_refuses(name) is refused


@pytest.mark.parametrize(("name", "refused"), [(".gitmodules", True), (".GITMODULES.", True), ("gitmod~3", True),
                                               (".gitattributes", False), ("normal", False)])
def test_git_refuses_gitmodules_symlinks_as_git_does(tmp_path: Path, name: str, refused: bool) -> None:
    run_git(tmp_path, "init", "-q")
    (tmp_path / name).symlink_to("target")
    assert (subprocess.run(["git", "add", "-A"], cwd=tmp_path, capture_output=True).returncode != 0) is refused
    assert git_refuses(name, symlink=True) is refused


def test_shown_escapes_only_what_needs_it() -> None:
    assert shown("src/a.py") == "src/a.py"
    assert shown("src/a\n.py") == "'src/a\\n.py'"
    assert shown("dir /a") == "'dir /a'"


# -- unreadable, as a user without CAP_DAC_OVERRIDE ------------------------------------------------------


def unprivileged_scan(root: Path) -> set[tuple[str, str]]:
    worktree, _ = make_worktree(root)
    lock_things(worktree)
    os.chmod(worktree, 0o755)  # a locked root hides all the rest: see the next test
    return kinds_and_paths(worktree)


def test_unreadable_files_and_directories_are_reported(nobody_dir: Path) -> None:  # noqa: F811
    found = as_nobody(unprivileged_scan, nobody_dir)
    assert found == {("unreadable", "secret.txt"), ("unreadable", "locked"), ("unreadable", "listable"),
                     ("unreadable", "a.txt"), ("unreadable", "src")}


def unprivileged_root_locked(root: Path) -> list[str]:
    worktree, _ = make_worktree(root)
    os.chmod(worktree, 0)
    try:
        return [str(f) for f in scan_worktree(worktree, max_file_bytes=CAP)]
    finally:
        os.chmod(worktree, 0o755)


def test_an_unlistable_root_is_a_finding_not_an_error(nobody_dir: Path) -> None:  # noqa: F811
    assert as_nobody(unprivileged_root_locked, nobody_dir) == ["unreadable: .: directory cannot be listed: "
                                                               "Permission denied"]


# -- the audit never reads what the scan calls oversized, and never opens a special file ------------------


def test_the_audit_checks_size_by_stat_and_skips_content_analysis(wt: Path) -> None:
    base = head_commit(wt)
    (wt / "test_big.py").write_text("def test_a():\n    assert 1\n" + "x" * 5000 +
                                    "\nAWS = 'AKIAIOSFODNN7EXAMPLE'\n")
    report = audit_changes(wt, base, Policy(), max_file_bytes=1000)
    assert [(f.kind, f.path) for f in report.findings] == [("oversized", "test_big.py")]
    assert "(not read)" in report.findings[0].evidence


def test_the_audit_never_opens_a_fifo_behind_a_symlink(wt: Path) -> None:
    base = head_commit(wt)
    os.mkfifo(wt / "pipe")
    (wt / "link").symlink_to("pipe")  # opening it would block forever: no writer
    report = audit_changes(wt, base, Policy())
    assert report.changed == ("link",)
