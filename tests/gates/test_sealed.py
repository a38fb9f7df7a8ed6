"""The sealed checkout and the gate's tree: exactly the decided tree, whatever the last gate left."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from onloop.gates.harness import Harness, gate_tree
from onloop.gates.sealed import SealedCheckout
from tests.conftest import git


def _commit(repo: Path, files: dict[str, str | None], message: str) -> str:
    for rel, text in files.items():
        path = repo / rel
        if text is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD").strip()


def _tree(root: Path) -> dict[str, str]:
    """Every entry under root: files by content, links by target, directories as such."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            found[rel] = "<dir>"
        elif path.is_file():
            found[rel] = path.read_text()
        else:
            found[rel] = "<special>"
    return found


@pytest.fixture
def repo(make_repo) -> Path:  # type: ignore[no-untyped-def]
    return make_repo({"calc.py": "def add(a, b):\n    return a + b\n", "tests/test_calc.py": "assert True\n",
                      ".gitignore": "build/\n"})


def test_a_gate_cannot_leave_anything_for_the_next_run(repo: Path, tmp_path: Path) -> None:
    sealed = SealedCheckout(repo / ".git", tmp_path / "sealed")
    root = sealed.prepare("HEAD")
    expected = _tree(root)
    # What code under test could do while a gate runs: rewrite and delete files, plant ignored and
    # untracked ones, nested repositories, a fifo, a socket, a link, take permissions away.
    (root / "tests" / "test_calc.py").write_text("assert 1\n")
    info = (root / "calc.py").stat()
    (root / "calc.py").write_text("def add(a, b):\n    return 5  \n")  # same size, mtime put back
    os.utime(root / "calc.py", ns=(info.st_atime_ns, info.st_mtime_ns))
    (root / ".gitignore").unlink()
    (root / "build").mkdir()
    (root / "build" / "conftest.py").write_text("planted\n")
    (root / "conftest.py").write_text("planted\n")
    subprocess.run(["git", "init", "-q", str(root / "nested")], check=True)
    os.mkfifo(root / "fifo")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "sock"))
    server.close()
    (root / "link").symlink_to("/etc/passwd")
    (root / "tests" / "test_calc.py").chmod(0)
    (root / "tests").chmod(0)

    again = sealed.prepare("HEAD")

    assert again == root
    assert _tree(root) == expected
    assert os.access(root / "tests" / "test_calc.py", os.R_OK)


def test_moving_between_trees_writes_only_what_the_tree_holds(repo: Path, tmp_path: Path) -> None:
    first = git(repo, "rev-parse", "HEAD").strip()
    second = _commit(repo, {"calc.py": "def add(a, b):\n    return b + a\n", "new.py": "X = 1\n",
                            "tests/test_calc.py": None}, "second")
    sealed = SealedCheckout(repo / ".git", tmp_path / "sealed")

    assert set(_tree(sealed.prepare(second))) == {".gitignore", "calc.py", "new.py"}
    assert set(_tree(sealed.prepare(first))) == {".gitignore", "calc.py", "tests", "tests/test_calc.py"}
    assert not (tmp_path / "sealed" / ".git").exists(), "no git metadata inside the checkout"
    assert git(repo, "status", "--porcelain") == "", "the repository's own index and worktree are untouched"


def test_the_gate_tree_takes_the_harness_from_the_base(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"calc.py": "X = 1\n", "tests/conftest.py": "# base\n", "tests/data/expected.txt": "5\n",
                      "tests/test_calc.py": "def test_x():\n    assert True\n"})
    base = git(repo, "rev-parse", "HEAD").strip()
    candidate = _commit(repo, {"calc.py": "X = 2\n", "tests/conftest.py": "# agent\n",
                               "tests/data/expected.txt": None, "src/conftest.py": "# new\n",
                               "tests/helpers.py": "# new helper\n", "tests/test_more.py": "def test_y(): pass\n"},
                        "candidate")

    protected = gate_tree(str(repo / ".git"), base, candidate, Harness())
    extended = gate_tree(str(repo / ".git"), base, candidate, Harness(extend=True))

    assert sorted(protected.restored) == ["tests/conftest.py", "tests/data/expected.txt"]
    assert sorted(protected.dropped) == ["src/conftest.py", "tests/helpers.py"]
    root = SealedCheckout(repo / ".git", tmp_path / "sealed").prepare(protected.tree)
    files = _tree(root)
    assert files["tests/conftest.py"] == "# base\n" and files["tests/data/expected.txt"] == "5\n"
    assert files["calc.py"] == "X = 2\n" and "tests/test_more.py" in files, "the work itself is the candidate's"
    assert "src/conftest.py" not in files and "tests/helpers.py" not in files
    # Extending the harness keeps new helpers and data, never new conftest.py files.
    assert sorted(extended.dropped) == ["src/conftest.py"]


def test_an_untouched_harness_gives_the_candidates_own_tree(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    candidate = _commit(repo, {"calc.py": "X = 3\n"}, "work")

    result = gate_tree(str(repo / ".git"), base, candidate, Harness())

    assert result.tree == git(repo, "rev-parse", f"{candidate}^{{tree}}").strip()
    assert (result.restored, result.dropped) == ((), ())
