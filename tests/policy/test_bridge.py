"""`model-only` network: the model endpoint is reachable from inside the sandbox, nothing else is."""

from __future__ import annotations

import http.server
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from policy_helpers import Checkout, needs_bwrap

from onloop.policy.bridge import ModelBridge, ModelEndpoint
from onloop.policy.model import Policy
from onloop.policy.sandbox import BwrapSandbox
from onloop.process import ProcessSpec, run_process

pytestmark = needs_bwrap


class _Named(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.tag.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(tag: str) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Named)
    server.tag = tag  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def servers() -> Iterator[tuple[int, int]]:
    model, other = _serve("model-server"), _serve("other-server")
    yield model.server_address[1], other.server_address[1]
    for server in (model, other):
        server.shutdown()
        server.server_close()


PROBE = """
import socket, urllib.request
def get(port):
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5).read().decode()
    except Exception as e:
        return f"failed {type(e).__name__}"
print("MODEL", get(%(model)d))
print("MODEL2", get(%(model)d))
print("OTHER", get(%(other)d))
try:
    socket.getaddrinfo("example.com", 443); print("DNS resolved")
except OSError as e:
    print("DNS failed")
"""


def test_model_only_reaches_just_the_model(checkout: Checkout, servers: tuple[int, int]) -> None:
    model, other = servers
    with BwrapSandbox(
        Policy(network="model-only"), checkout.worktree, checkout.git_dir, model_endpoint=f"127.0.0.1:{model}"
    ) as box:
        box.check()
        lines: list[str] = []
        spec = ProcessSpec(argv=(sys.executable, "-c", PROBE % {"model": model, "other": other}),
                           cwd=checkout.worktree, timeout=30)
        result = run_process(spec, box, on_line=lines.append)
    out = "\n".join(lines)
    assert result.exit_code == 0, out
    assert "MODEL model-server" in out and "MODEL2 model-server" in out
    assert "OTHER failed" in out
    assert "DNS failed" in out


def test_model_only_without_endpoint_is_no_network(checkout: Checkout, servers: tuple[int, int]) -> None:
    model, other = servers
    box = BwrapSandbox(Policy(network="model-only"), checkout.worktree, checkout.git_dir)
    lines: list[str] = []
    spec = ProcessSpec(argv=(sys.executable, "-c", PROBE % {"model": model, "other": other}),
                       cwd=checkout.worktree, timeout=30)
    run_process(spec, box, on_line=lines.append)
    assert "MODEL failed" in "\n".join(lines)


def test_bridge_relays_both_ways_and_closes(servers: tuple[int, int]) -> None:
    model, _ = servers
    with ModelBridge(ModelEndpoint("127.0.0.1", model)) as bridge:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(bridge.socket_path))
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        assert data.startswith(b"HTTP/1.0 200") and data.endswith(b"model-server")
        path: Path = bridge.socket_path
    assert not path.exists()


def test_bridge_to_dead_endpoint_closes_the_client() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    with ModelBridge(ModelEndpoint("127.0.0.1", dead)) as bridge, socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(bridge.socket_path))
        assert sock.recv(10) == b""


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("http://localhost:11434/v1", ("localhost", 11434)),
     ("https://[::1]:9/x", ("::1", 9))],
)
def test_endpoint_parse(text: str, expected: tuple[str, int]) -> None:
    endpoint = ModelEndpoint.parse(text)
    assert (endpoint.host, endpoint.port) == expected


def test_endpoint_needs_port() -> None:
    with pytest.raises(ValueError, match="explicit port"):
        ModelEndpoint.parse("http://localhost/v1")
