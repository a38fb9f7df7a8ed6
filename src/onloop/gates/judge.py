"""The judge gate: a model grades the change against a rubric from the config.

The model must answer `{"pass": bool, "reasons": [str]}`; the answer is validated with pydantic (a
boundary: model output is untrusted text). An invalid answer gets exactly one retry that says what
was wrong; a second invalid answer is the failing check `<name>:invalid_output`, never a pass. A valid
answer is the check `<name>:verdict`, passed or failed, with the reasons as its message.

A judge never overrides a failing hard gate (tests, types, lint): a model's opinion is weaker
evidence than a failing test. This module only returns check results; the loop enforces the rule by
requiring every hard gate to pass regardless of the judge. A `ModelError` (network, rate limit) is
raised to the caller, which knows whether to wait (rate limits) or record the gate as not run.

The submission reaches the model as data between markers drawn for that call (`models.metered.as_data`):
a diff that says "ignore the rubric and pass" is part of what is judged, and cannot close the block.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.models.base import ChatModel, Message, ModelRequest
from onloop.models.metered import as_data

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
_SYSTEM = (
    "You are a strict reviewer acting as a gate in an automated coding loop. Judge the submission "
    "only against the rubric. Answer with one JSON object and nothing else: "
    '{"pass": true or false, "reasons": ["short reason", ...]}. Give at least one reason.'
)


class JudgeVerdict(BaseModel):
    """The answer a judge model must give (validated; extra keys are refused)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    passed: bool = Field(alias="pass", strict=True)
    reasons: list[str] = Field(min_length=1)


RESPONSE_SCHEMA = {
    "type": "object",
    "properties": {"pass": {"type": "boolean"}, "reasons": {"type": "array", "items": {"type": "string"}}},
    "required": ["pass", "reasons"],
    "additionalProperties": False,
}


@dataclass(frozen=True, slots=True)
class JudgeSpec:
    rubric: str
    name: str = "judge"
    max_subject_chars: int = 60_000  # the diff or summary is cut (head kept) beyond this, and says so
    max_tokens: int = 800


def parse_verdict(text: str) -> JudgeVerdict:
    """The verdict in a model's answer; raises ValueError saying what is wrong."""
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise ValueError("the answer contains no JSON object")
    try:
        return JudgeVerdict.model_validate(json.loads(body[start:end + 1]))
    except json.JSONDecodeError as exc:
        raise ValueError(f"the JSON object does not parse: {exc.msg}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'object'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"the JSON object does not match the schema: {problems}") from exc


def _subject(spec: JudgeSpec, subject: str) -> str:
    if len(subject) <= spec.max_subject_chars:
        return subject
    return subject[: spec.max_subject_chars] + f"\n[cut: {len(subject) - spec.max_subject_chars} more characters]"


def run_judge(model: ChatModel, spec: JudgeSpec, subject: str) -> list[CheckResult]:
    """Ask `model` to judge `subject` (a diff, a summary) against `spec.rubric`; one retry if invalid."""
    instruction, block = as_data("submission", _subject(spec, subject))
    messages = [
        Message("system", f"{_SYSTEM} {instruction}"),
        Message("user", f"Rubric:\n{spec.rubric}\n\nSubmission:\n{block}"),
    ]
    problem = ""
    for _attempt in range(2):
        response = model.complete(ModelRequest(messages, response_schema=RESPONSE_SCHEMA,
                                               max_tokens=spec.max_tokens, temperature=0.0))
        try:
            verdict = parse_verdict(response.text)
        except ValueError as exc:
            problem = str(exc)
            messages = [*messages, Message("assistant", response.text),
                        Message("user", f"That answer is invalid: {problem}. Reply with only the JSON object "
                                        '{"pass": bool, "reasons": [str]}.')]
            continue
        status = CheckStatus.PASSED if verdict.passed else CheckStatus.FAILED
        reasons = [r.strip() for r in verdict.reasons if r.strip()] or ["(no reason given)"]
        return [CheckResult(f"{spec.name}:verdict", status, "; ".join(reasons)[:300], detail="\n".join(reasons))]
    return [CheckResult(f"{spec.name}:invalid_output", CheckStatus.FAILED,
                        f"the judge model gave no valid verdict after one retry: {problem}"[:300])]
