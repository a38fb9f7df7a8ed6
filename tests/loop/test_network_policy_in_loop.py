"""`policy.network = "model-only"` through the loop: the agent reaches its model endpoint and nothing else."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from onloop.loop.api import start_run
from onloop.loop.stop import StopReason
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.testing import Edit, Scenario, Step
from tests.loop.helpers import workspace

PROBE = """import os, socket, sys, urllib.request
results = []
for name, url in (("model", os.environ["ANTHROPIC_BASE_URL"] + "/v1/models"), ("other", sys.argv[1])):
    try:
        results.append(f"{name}:" + urllib.request.urlopen(url, timeout=3).read().decode())
    except Exception as exc:
        results.append(f"{name}:blocked:{type(exc).__name__}")
try:
    socket.getaddrinfo("pypi.org", 443)
    results.append("dns:resolved")
except OSError:
    results.append("dns:blocked")
open("probe.txt", "w").write("\\n".join(results) + "\\n")
"""


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.server.reply)  # type: ignore[attr-defined]

    def log_message(self, *args: object) -> None:
        return None


def _serve(reply: bytes) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server.reply = reply  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def model_server() -> Iterator[str]:
    yield from _serve(b"MODEL-OK")


@pytest.fixture
def other_server() -> Iterator[str]:
    yield from _serve(b"SECRET-SERVICE")


def test_model_only_network_lets_the_model_through_and_nothing_else(make_repo, tmp_path: Path,
                                                                     model_server: str, other_server: str) -> None:
    probe = Step(message="probed", edits=(Edit("probe.py", write=PROBE),),
                 commands=(("python3", "probe.py", other_server),))
    extra = f'[policy]\nnetwork = "model-only"\n\n[backends.scripted_net]\nkind = "scripted"\n' \
            f'scenario = "{tmp_path / "net.json"}"\nbase_url = "{model_server}"\n'
    Scenario((probe,)).write(tmp_path / "net.json")
    repo = workspace(make_repo, tmp_path, Scenario(()), extra=extra)
    db = Database.open_default()

    outcome = start_run(repo, db=db, backend="scripted_net", max_iterations=1)

    assert outcome.reason is StopReason.MAX_ITERATIONS
    probe_out = (Path(store.get_run(db, outcome.run_id).worktree) / "probe.txt").read_text().splitlines()
    assert probe_out[0] == "model:MODEL-OK"
    assert probe_out[1].startswith("other:blocked") and "SECRET-SERVICE" not in probe_out[1]
    assert probe_out[2] == "dns:blocked"


def test_model_only_without_an_endpoint_is_a_config_error(make_repo, tmp_path: Path) -> None:
    from onloop.errors import ConfigError

    repo = workspace(make_repo, tmp_path, Scenario(()), extra='[policy]\nnetwork = "model-only"\n')
    db = Database.open_default()
    with pytest.raises(ConfigError, match="base_url"):
        start_run(repo, db=db)
    assert store.list_runs(db) == [], "an operator mistake is reported before any run is created"
