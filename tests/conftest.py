"""Every test gets its own ONLOOP_HOME and can never reach a real model or agent CLI by accident."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from onloop.safety import ENV_SWITCH

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("onloop-home")
    monkeypatch.setenv("ONLOOP_HOME", str(home))
    monkeypatch.setenv(ENV_SWITCH, "1")
    # git needs an identity for the commits onloop makes; never the developer's own config.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    (home / "gitconfig").write_text("[user]\n\tname = onloop tests\n\temail = tests@onloop.invalid\n"
                                    "[init]\n\tdefaultBranch = main\n")
    yield home


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def make_repo(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Create a git repository with the given files committed on `main`; returns its path."""

    def make(files: dict[str, str], name: str = "repo") -> Path:
        repo = tmp_path / name
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        for rel, content in files.items():
            path = repo / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "initial")
        return repo

    return make


def have(binary: str) -> bool:
    return shutil.which(binary) is not None


__all__ = ["REPO_ROOT", "SHARED_FIXTURES", "TEST_DATA", "git", "have", "os"]
