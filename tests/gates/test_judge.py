"""The judge gate with an in-test fake implementing the ChatModel protocol."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from onloop.gates.checks import CheckStatus
from onloop.gates.judge import JudgeSpec, parse_verdict, run_judge
from onloop.models.base import ChatModel, ModelError, ModelRequest, ModelResponse


class FakeJudgeModel:
    """Answers with the scripted texts in order and records every request."""

    name = "fake-judge"

    def __init__(self, answers: Sequence[str | Exception]) -> None:
        self.answers = list(answers)
        self.requests: list[ModelRequest] = []

    def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return ModelResponse(text=answer, model=self.name)


SPEC = JudgeSpec(rubric="The change must add a docstring to every public function.", name="judge")


def test_pass_verdict() -> None:
    model = FakeJudgeModel(['{"pass": true, "reasons": ["all public functions documented"]}'])
    typed: ChatModel = model  # the fake satisfies the protocol (checked by mypy on this file)
    [check] = run_judge(typed, SPEC, "diff --git a/x.py b/x.py\n+def f():\n+    '''Doc.'''\n")
    assert (check.check_id, check.status, check.message) == (
        "judge:verdict", CheckStatus.PASSED, "all public functions documented")
    request = model.requests[0]
    assert request.response_schema is not None and request.response_schema["required"] == ["pass", "reasons"]
    assert "docstring to every public function" in request.messages[-1].content
    assert "diff --git" in request.messages[-1].content


def test_fail_verdict_in_a_code_fence() -> None:
    model = FakeJudgeModel(['```json\n{"pass": false, "reasons": ["f has no docstring", "g neither"]}\n```'])
    [check] = run_judge(model, SPEC, "diff")
    assert check.status is CheckStatus.FAILED
    assert check.message == "f has no docstring; g neither"
    assert check.detail.splitlines() == ["f has no docstring", "g neither"]


def test_invalid_then_valid_uses_one_retry_that_names_the_problem() -> None:
    model = FakeJudgeModel(['{"pass": "yes", "reasons": []}', '{"pass": true, "reasons": ["ok"]}'])
    [check] = run_judge(model, SPEC, "diff")
    assert check.status is CheckStatus.PASSED
    assert len(model.requests) == 2
    retry = model.requests[1].messages[-1].content
    assert "invalid" in retry and "pass" in retry


@pytest.mark.parametrize("answers", [
    ["I think it passes.", "Still prose."],
    ['{"pass": true}', '{"pass": true, "reasons": ["x"], "score": 9}'],
])
def test_two_invalid_answers_fail_the_gate(answers: list[str]) -> None:
    model = FakeJudgeModel(answers)
    [check] = run_judge(model, SPEC, "diff")
    assert (check.check_id, check.status) == ("judge:invalid_output", CheckStatus.FAILED)
    assert len(model.requests) == 2  # exactly one retry


def test_model_errors_reach_the_caller() -> None:
    model = FakeJudgeModel([ModelError("slow down", rate_limited=True, status=429)])
    with pytest.raises(ModelError) as info:
        run_judge(model, SPEC, "diff")
    assert info.value.rate_limited


def test_long_subjects_are_cut_and_say_so() -> None:
    model = FakeJudgeModel(['{"pass": true, "reasons": ["ok"]}'])
    run_judge(model, JudgeSpec(rubric="r", max_subject_chars=100), "x" * 1000)
    content = model.requests[0].messages[-1].content
    assert "[cut: 900 more characters]" in content and content.count("x") < 200


def test_parse_verdict_errors_are_specific() -> None:
    with pytest.raises(ValueError, match="no JSON object"):
        parse_verdict("nope")
    with pytest.raises(ValueError, match="reasons"):
        parse_verdict('{"pass": true, "reasons": []}')
    assert parse_verdict('Sure! {"pass": false, "reasons": ["r"]} Hope that helps.').passed is False
