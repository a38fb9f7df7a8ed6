from __future__ import annotations

from collections.abc import Iterator

import pytest

from onloop.testing.fake_model_server import FakeModelServer


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as fake:
        yield fake
