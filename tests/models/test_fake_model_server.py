"""The fake model server itself, read back through the official SDKs and raw HTTP."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import openai
import pytest

from onloop.models.base import ToolCall
from onloop.testing.fake_model_server import FakeModelServer, Turn, tool_call
from onloop.usage import Usage


def post(url: str, body: object) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_responses_api_streaming_through_the_openai_sdk(server: FakeModelServer) -> None:
    server.add(Turn(text="I will list files.", tool_calls=(ToolCall("call_7", "exec_command", {"cmd": "ls"}),),
                    usage=Usage(200, 40, 10)))
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0)
    with client.responses.stream(model="gpt-5-codex", input="hi") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert {"response.output_item.added", "response.output_text.delta", "response.output_item.done"} <= set(kinds)
    assert final.output_text == "I will list files."
    call = final.output[1]
    assert call.type == "function_call" and call.call_id == "call_7" and json.loads(call.arguments) == {"cmd": "ls"}
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (200, 40)
    assert final.usage.input_tokens_details.cached_tokens == 10
    assert server.requests[0].path == "/v1/responses"


def test_responses_api_json(server: FakeModelServer) -> None:
    server.add(Turn(text="plain"))
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0)
    assert client.responses.create(model="m", input="hi").output_text == "plain"


def test_anthropic_beta_query_and_mid_conversation_system_role(server: FakeModelServer) -> None:
    server.add(Turn(text="ok"))
    status, raw = post(server.url + "/v1/messages?beta=true", {
        "model": "claude", "max_tokens": 10, "stream": True,
        "messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "mid"},
                     {"role": "user", "content": "b"}]})
    assert status == 200
    text = raw.decode()
    events = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event: ")]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "content_block_delta" in events and "message_delta" in events
    assert server.requests[0].query == {"beta": ["true"]}
    assert server.requests[0].body["messages"][1]["role"] == "system"


def test_chat_stream_without_include_usage_has_no_usage_chunk(server: FakeModelServer) -> None:
    server.add(Turn(text="abc"))
    status, raw = post(server.openai_base_url + "/chat/completions",
                       {"model": "m", "messages": [], "stream": True})
    assert status == 200
    chunks = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
    assert chunks[-1] == "[DONE]"
    assert all("usage" not in json.loads(chunk) for chunk in chunks[:-1])


def test_models_endpoint_and_recording(server: FakeModelServer) -> None:
    with urllib.request.urlopen(server.openai_base_url + "/models", timeout=10) as response:
        listing = json.loads(response.read())
    assert listing["data"][0]["id"] == "fake-model"
    assert server.requests[0].method == "GET" and server.requests[0].wire == "models"


def test_empty_queue_answers_500_and_default_turn(server: FakeModelServer) -> None:
    status, raw = post(server.openai_base_url + "/chat/completions", {"model": "m", "messages": []})
    assert status == 500 and b"no scripted turn left" in raw
    server.default = Turn(text="always")
    status, raw = post(server.openai_base_url + "/chat/completions", {"model": "m", "messages": []})
    assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"] == "always"


def test_bad_json_and_unknown_path(server: FakeModelServer) -> None:
    request = urllib.request.Request(server.url + "/v1/messages", data=b"{nope", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400
    status, _ = post(server.url + "/v2/whatever", {})
    assert status == 404


def test_assert_complete_and_tool_call_helper() -> None:
    with FakeModelServer([Turn(text="unused", tool_calls=(tool_call("read_file", path="a"),))]) as fake:
        with pytest.raises(AssertionError, match="1 scripted turn"):
            fake.assert_complete()
        assert fake.url.startswith("http://127.0.0.1:")


def test_stop_does_not_wait_for_a_delayed_answer() -> None:
    fake = FakeModelServer([Turn(text="late", delay=30)]).start()
    import threading

    thread = threading.Thread(target=post, args=(fake.openai_base_url + "/chat/completions",
                                                 {"model": "m", "messages": []}), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not fake.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 3
    thread.join(timeout=5)
