"""Fixtures for the guardrail tests: a repository with a linked worktree, both under a temp dir in /tmp."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from policy_helpers import Checkout, git

from onloop.policy.model import Policy
from onloop.policy.sandbox import BwrapSandbox, common_git_dir


@pytest.fixture
def checkout(make_repo) -> Checkout:  # type: ignore[no-untyped-def]
    repo = make_repo({"a.txt": "hello\n", "tests/test_a.py": "def test_a():\n    assert 1 == 1\n"})
    worktree = repo.parent / "wt"
    git(repo, "worktree", "add", "-q", "-b", "run", str(worktree))
    return Checkout(repo=repo, worktree=worktree, git_dir=common_git_dir(worktree))


@pytest.fixture
def sandbox(checkout: Checkout) -> Iterator[BwrapSandbox]:
    with BwrapSandbox(Policy(), checkout.worktree, checkout.git_dir) as box:
        box.check()
        yield box
