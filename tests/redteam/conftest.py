"""Red-team fixtures: the category of each test for the summary, and host paths outside /tmp.

The sandbox always hides /tmp, so a victim file under pytest's tmp_path proves little about the
sandbox's other walls. `host_dir` is a directory under /var/tmp instead, like a real repository or home
directory elsewhere on the host: whatever rule keeps it out of the sandbox (a read-only view, or not
being mounted at all), the attacks against it must fail.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

HOST_ROOT = Path("/var/tmp")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redteam(category): the red-team category a test belongs to")


@pytest.fixture(autouse=True)
def _category(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("redteam")
    if marker is not None:
        request.node.user_properties.append(("redteam_category", marker.args[0]))


@pytest.fixture
def host_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="onloop-redteam-", dir=HOST_ROOT))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
