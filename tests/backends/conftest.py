"""Fixtures for the agent-backend tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from backendhelpers import CALC_BUGGY, Harness


@pytest.fixture
def harness(make_repo: Callable[..., Path], tmp_path: Path) -> Harness:
    repo = make_repo({"calc.py": CALC_BUGGY, "README.md": "calc\n"})
    root = tmp_path / "onloop"
    root.mkdir()
    return Harness(repo, root)

