"""`network = "model-only"`: the model endpoint, and nothing else, reachable from inside the sandbox.

The sandbox has its own network namespace with only loopback in it, so no packet can leave. To let an
agent CLI talk to its model anyway, two small forwarders are chained through a Unix socket, which is a
file and therefore crosses the namespace boundary by a bind mount:

    agent ──TCP 127.0.0.1:PORT──▶ inner forwarder ──Unix socket──▶ ModelBridge ──TCP──▶ host:PORT
           (inside the sandbox: socat)                 (bind-mounted)  (host side: this module)

The host side (`ModelBridge`) is a threaded relay that connects to exactly one `host:port`, whatever
the client sends; the client cannot choose a destination. The inner side is `socat TCP-LISTEN` started
by a two-line shell prefix (`inner_prefix`) that waits until the listener is up before exec'ing the
agent, so the agent's first request cannot race it. DNS is not forwarded: names do not resolve inside.

Threads rather than asyncio because the loop is synchronous and the bridge must keep running while the
caller blocks in `run_process`.
"""

from __future__ import annotations

import contextlib
import selectors
import shutil
import socket
import socketserver
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOCKET_NAME = "model.sock"
_CONNECT_TIMEOUT = 10.0
_BUFFER = 65536


@dataclass(frozen=True, slots=True)
class ModelEndpoint:
    """The one host-side TCP endpoint an agent may reach, e.g. the model server on 127.0.0.1:18080."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ModelEndpoint:
        """`"127.0.0.1:18080"` or a URL such as `"http://localhost:18080/v1"`."""
        rest = text.split("://", 1)[-1].split("/", 1)[0]
        host, sep, port = rest.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"model endpoint {text!r} needs an explicit port (host:port)")
        return cls(host.strip("[]") or "127.0.0.1", int(port))


class ModelBridge:
    """Host side of the bridge: a Unix socket whose every connection is relayed to one endpoint.

    Use as a context manager, or call `start()` and `close()`. `socket_dir` is what the sandbox binds
    in (read-only is enough: connecting to a socket is not a write to the file system).
    """

    def __init__(self, endpoint: ModelEndpoint, socket_dir: Path | None = None) -> None:
        self.endpoint = endpoint
        self._own_dir = socket_dir is None
        # Unix socket paths are limited to 107 bytes, so the default directory is short and private.
        self.socket_dir = socket_dir or Path(tempfile.mkdtemp(prefix="onloop-bridge-"))
        self.socket_path = self.socket_dir / SOCKET_NAME
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ModelBridge:
        if self._server is not None:
            return self
        self.socket_path.unlink(missing_ok=True)
        server = _Server(str(self.socket_path), _Relay)
        server.endpoint = self.endpoint
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.2,), daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._server is not None

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.socket_path.unlink(missing_ok=True)
        if self._own_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self) -> ModelBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    endpoint: ModelEndpoint


class _Relay(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        client: socket.socket = self.request
        endpoint = self.server.endpoint
        try:
            upstream = socket.create_connection((endpoint.host, endpoint.port), timeout=_CONNECT_TIMEOUT)
        except OSError:
            return  # the client sees its connection closed, as with a refused TCP connect
        upstream.settimeout(None)
        with upstream:
            relay(client, upstream)


def relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until both sides have closed; half-closes are passed on."""
    peers = {a: b, b: a}
    open_reads = 2
    with selectors.DefaultSelector() as sel:
        sel.register(a, selectors.EVENT_READ)
        sel.register(b, selectors.EVENT_READ)
        while open_reads:
            for key, _ in sel.select(timeout=None):
                source: Any = key.fileobj
                try:
                    data = source.recv(_BUFFER)
                except OSError:
                    data = b""
                if data:
                    try:
                        peers[source].sendall(data)
                        continue
                    except OSError:
                        return
                sel.unregister(source)
                open_reads -= 1
                _shutdown_write(peers[source])


def _shutdown_write(sock: socket.socket) -> None:
    # Already closed by the peer: nothing left to tell it.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


def inner_prefix(port: int, socket_path: Path) -> list[str]:
    """argv prefix run inside the sandbox: start the loopback listener, wait for it, exec the rest."""
    # /proc/net/tcp lists listeners as "0100007F:<PORT in hex> 00000000:0000 0A" (0A = LISTEN).
    script = (
        'socat "TCP-LISTEN:$1,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$2" & '
        "i=0; while [ $i -lt 500 ]; do "
        'grep -q "0100007F:$3 00000000:0000 0A" /proc/net/tcp && break; i=$((i+1)); sleep 0.01; done; '
        'shift 3; exec "$@"'
    )
    return ["/bin/sh", "-c", script, "onloop-bridge", str(port), str(socket_path), f"{port:04X}"]
