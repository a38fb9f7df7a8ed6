"""A fake model server over real HTTP on loopback, scripted per test.

It speaks the three wire APIs onloop and the agent CLIs use, with and without SSE streaming:

- OpenAI chat completions, `POST /v1/chat/completions` (JSON, or SSE with `tool_calls` deltas and the
  final usage chunk when `stream_options.include_usage` is set), which onloop's own OpenAI-compatible
  model, aider and opencode speak;
- the OpenAI Responses API, `POST /v1/responses` (`response.created`, `response.output_item.added/done`,
  `response.output_text.delta`, `response.completed` with usage; `function_call` items), which Codex
  speaks (`wire_api = "responses"`);
- Anthropic Messages, `POST /v1/messages` (also with `?beta=true`, as Claude Code sends it), with
  `message_start`, `content_block_start/delta/stop` (`text_delta`, `input_json_delta`),
  `message_delta` with usage and `message_stop`. Requests are not validated beyond being JSON, so a
  `role: "system"` message in the middle of a conversation is accepted.

Each request takes the next scripted `Turn` from a queue: text, tool calls, usage, an error status with
a body, a 429 with reset headers, a delay before answering. Every request is recorded (path, query,
headers, JSON body) for assertions. `GET /v1/models` lists the model. With the queue empty the server
answers 500 with a message saying so, unless a `default` turn is given.

Point your own automations at it to test them offline::

    from onloop.models.base import ToolCall
    from onloop.testing.fake_model_server import FakeModelServer, Turn

    with FakeModelServer([
        Turn(tool_calls=(ToolCall("call_1", "read_file", {"path": "README.md"}),)),
        Turn(text="All done."),
    ]) as server:
        # onloop.toml:  [backends.nightly] kind = "builtin", provider = "openai",
        #               model = "gpt-4o-mini", base_url = server.openai_base_url
        # Claude Code:  ANTHROPIC_BASE_URL=server.url   Codex: base_url = server.openai_base_url
        ...
        assert server.requests[0].body["model"] == "gpt-4o-mini"
        server.assert_complete()
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from onloop.models.base import ToolCall
from onloop.testing import _fake_wire as wire
from onloop.usage import Usage

DEFAULT_MODEL = "fake-model"
_CALL_IDS = itertools.count(1)
_ROUTES = {
    "/v1/chat/completions": "chat", "/chat/completions": "chat",
    "/v1/responses": "responses", "/responses": "responses",
    "/v1/messages": "anthropic", "/messages": "anthropic",
}


@dataclass(frozen=True, slots=True)
class Turn:
    """One scripted answer. A `status` other than 200 answers with an error body in the caller's format."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage(input_tokens=10, output_tokens=5)
    status: int = 200
    error: str | Mapping[str, Any] | None = None  # message, or a whole JSON body to send as is
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the answer starts
    reported_cost: Decimal | None = None  # sent as usage.cost, as OpenRouter does (chat completions)
    finish_reason: str = ""
    model: str | None = None
    chunk_chars: int = 16  # size of each text or argument delta when streaming
    stream_usage: bool = True  # False: no usage chunk even when asked, as llama.cpp's server does
    raw_body: Mapping[str, Any] | None = None  # sent as is instead of a generated body (non-streaming)

    @classmethod
    def rate_limited(cls, headers: Mapping[str, str] | None = None, message: str = "Rate limit reached",
                     status: int = 429) -> Turn:
        return cls(status=status, error=message, headers=dict(headers or {}))

    @classmethod
    def failure(cls, status: int = 500, error: str | Mapping[str, Any] = "Internal server error") -> Turn:
        return cls(status=status, error=error)


def tool_call(tool: str, call_id: str | None = None, /, **arguments: Any) -> ToolCall:
    """A scripted tool call (`tool_call("run_action", name="test")`); ids are numbered when not given."""
    return ToolCall(call_id or f"call_{next(_CALL_IDS)}", tool, arguments)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-cased names
    body: Any  # the parsed JSON body (None for GET)
    wire: str  # chat | responses | anthropic | models | unknown


class FakeModelServer:
    """See the module docstring. Use as a context manager, or call `start()` and `stop()`."""

    def __init__(self, turns: Iterable[Turn] = (), *, default: Turn | None = None, model: str = DEFAULT_MODEL,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.model = model
        self.default = default
        self._turns: deque[Turn] = deque(turns)
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._counter = 0

    # lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FakeModelServer:
        server = ThreadingHTTPServer(self._address, _Handler)
        server.daemon_threads = True
        server.block_on_close = False  # a handler sleeping in a scripted delay must not hold up stop()
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-model-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # scripting and assertions ------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL without a path: what Anthropic clients and `ANTHROPIC_BASE_URL` want."""
        if self._server is None:
            raise RuntimeError("the fake model server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_base_url(self) -> str:
        """`url` + `/v1`: what OpenAI clients want as base URL."""
        return self.url + "/v1"

    def add(self, *turns: Turn) -> None:
        with self._lock:
            self._turns.extend(turns)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._turns)

    def assert_complete(self) -> None:
        if self.remaining:
            raise AssertionError(f"{self.remaining} scripted turn(s) of the fake model server were never used")

    # used by the handler -----------------------------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_turn(self) -> tuple[Turn | None, str]:
        with self._lock:
            self._counter += 1
            turn = self._turns.popleft() if self._turns else self.default
            return turn, f"fake_{self._counter}"

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)


class _Handler(BaseHTTPRequestHandler):
    server_version = "onloop-fake-model-server/1"
    protocol_version = "HTTP/1.1"

    @property
    def fake(self) -> FakeModelServer:
        return self.server.fake  # type: ignore[attr-defined, no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        return None  # the recorded requests are the log; stderr noise would drown test output

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self._record(parts.path, parts.query, None, "models")
        if parts.path.rstrip("/") in ("/v1/models", "/models"):
            body = {"object": "list", "data": [{"id": self.fake.model, "object": "model", "created": 0,
                                                "owned_by": "onloop"}]}
            self._send_json(200, body)
        else:
            self._send_json(404, wire.error_body("chat", 404, f"no such path: {parts.path}"))

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        route = _ROUTES.get(parts.path.rstrip("/"), "unknown")
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            body = json.loads(raw or b"null")
        except json.JSONDecodeError:
            self._record(parts.path, parts.query, raw.decode("utf-8", "replace"), route)
            self._send_json(400, wire.error_body(route, 400, "request body is not JSON"))
            return
        self._record(parts.path, parts.query, body, route)
        if route == "unknown":
            self._send_json(404, wire.error_body("chat", 404, f"no such path: {parts.path}"))
            return
        self._answer(route, body if isinstance(body, dict) else {})

    def _record(self, path: str, query: str, body: Any, route: str) -> None:
        headers = {key.lower(): value for key, value in self.headers.items()}
        self.fake._record(RecordedRequest(self.command, path, parse_qs(query), headers, body, route))

    def _answer(self, route: str, body: dict[str, Any]) -> None:
        turn, response_id = self.fake._next_turn()
        if turn is None:
            message = "fake model server: no scripted turn left for this request"
            self._send_json(500, wire.error_body(route, 500, message))
            return
        if turn.delay:
            self.fake._wait(turn.delay)
        if turn.status != 200 and turn.raw_body is None:
            self._send_error_turn(route, turn)
            return
        model = turn.model or str(body.get("model") or self.fake.model)
        if turn.raw_body is not None:
            self._send_json(turn.status, dict(turn.raw_body), turn.headers)
        elif body.get("stream"):
            self._send_events(self._events(route, turn, model, response_id, body))
        else:
            self._send_json(200, self._json(route, turn, model, response_id))

    @staticmethod
    def _json(route: str, turn: Turn, model: str, response_id: str) -> dict[str, Any]:
        if route == "chat":
            return wire.chat_json(turn, model, "chatcmpl-" + response_id)
        if route == "responses":
            return wire.responses_json(turn, model, "resp_" + response_id)
        return wire.messages_json(turn, model, "msg_" + response_id)

    @staticmethod
    def _events(route: str, turn: Turn, model: str, response_id: str,
                body: dict[str, Any]) -> Iterator[wire.SseEvent]:
        if route == "chat":
            options = body.get("stream_options") or {}
            include_usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
            return wire.chat_events(turn, model, "chatcmpl-" + response_id, include_usage)
        if route == "responses":
            return wire.responses_events(turn, model, "resp_" + response_id)
        return wire.messages_events(turn, model, "msg_" + response_id)

    def _send_error_turn(self, route: str, turn: Turn) -> None:
        if isinstance(turn.error, Mapping):
            body: Any = dict(turn.error)
        else:
            body = wire.error_body(route, turn.status, turn.error or f"scripted error {turn.status}")
        self._send_json(turn.status, body, turn.headers)

    def _send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout in a test)

    def _send_events(self, events: Iterator[wire.SseEvent]) -> None:
        # No content-length for a stream: the connection is closed at its end, as HTTP/1.1 allows.
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for name, data in events:
                self.wfile.write(wire.sse(name, data))
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up (a timeout in a test); nothing to tell it any more
