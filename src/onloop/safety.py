"""The switch that keeps tests from ever reaching a real model or a real agent CLI by accident.

The test suite sets ONLOOP_NO_REAL_CALLS=1 (tests/conftest.py does it for every test). While it is set:
- a model client refuses any endpoint that is not on this machine's loopback (the fake model server is);
- an agent CLI backend refuses to launch the real binary (claude, codex, aider, opencode); the fake
  executables are configured with an explicit `command`.
A test that really wants a real one opts in with `allow_real_calls()`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

from onloop.errors import OperatorError

ENV_SWITCH = "ONLOOP_NO_REAL_CALLS"


class RealCallBlocked(OperatorError):
    """A real model or agent CLI was about to be used while real calls are switched off."""


def real_calls_allowed() -> bool:
    return os.environ.get(ENV_SWITCH, "") not in ("1", "true", "yes")


def is_loopback_url(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ensure_model_endpoint_allowed(base_url: str | None) -> None:
    if real_calls_allowed():
        return
    if base_url is None or not is_loopback_url(base_url):
        raise RealCallBlocked(
            f"real model calls are switched off ({ENV_SWITCH}=1) and {base_url or 'the default endpoint'} "
            "is not on loopback; point the model at onloop.testing's fake model server"
        )


def ensure_real_cli_allowed(binary: str) -> None:
    if not real_calls_allowed():
        raise RealCallBlocked(
            f"real agent CLIs are switched off ({ENV_SWITCH}=1): refusing to run {binary!r}; "
            "configure a fake executable with `command = [...]`"
        )


@contextmanager
def allow_real_calls() -> Iterator[None]:
    previous = os.environ.pop(ENV_SWITCH, None)
    try:
        yield
    finally:
        if previous is not None:
            os.environ[ENV_SWITCH] = previous
