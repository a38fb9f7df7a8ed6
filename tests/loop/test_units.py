"""Pure pieces of the loop: plan parsing, context assembly and its cuts, stop rules, config parsing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onloop.config import RunConfig, find_key_line, parse_config, parse_duration
from onloop.errors import ConfigError
from onloop.loop import rules
from onloop.loop.context import Section, assemble, estimate_tokens
from onloop.loop.plan import newly_closed, parse_plan
from onloop.loop.state import RunState
from onloop.loop.stop import StopReason


def test_plan_items_open_closed_and_current() -> None:
    plan = parse_plan("# Plan\n\n- [x] done one\n- [ ] next one\n* [ ] later\nnot an item\n  - [X] nested done\n")
    assert plan.open_items == ("next one", "later")
    assert plan.closed_items == {"done one", "nested done"}
    assert plan.current == "next one"
    after = parse_plan("- [x] done one\n- [x] next one\n- [ ] later\n")
    assert newly_closed(plan, after) == ("next one",)


def test_context_never_cuts_operator_messages_or_prompt_and_says_what_it_cut() -> None:
    sections = [Section("operator", "Operator", "- stop using floats", 0),
                Section("prompt", "Prompt", "do the thing", 0),
                Section("plan", "Plan", "- [ ] item\n" * 200, 3),
                Section("specs", "Specs", "spec line\n" * 2000, 6)]
    context = assemble(sections, max_tokens=1000)
    assert context.tokens <= 1000
    assert context.text.startswith("## Operator\n\n- stop using floats")
    assert "do the thing" in context.text
    assert context.cuts and context.cuts[0].startswith("specs")
    assert "[onloop: Specs" in context.text


@given(st.lists(st.text(min_size=0, max_size=3000), min_size=1, max_size=6), st.integers(1000, 6000))
def test_context_fits_the_budget_whenever_the_uncuttable_part_does(bodies: list[str], budget: int) -> None:
    sections = [Section("prompt", "Prompt", "p", 0)] + [
        Section(f"s{i}", f"S{i}", body, i + 1) for i, body in enumerate(bodies)]
    context = assemble(sections, max_tokens=budget)
    assert context.tokens <= budget + 60  # a cut section leaves a one-line note behind
    assert estimate_tokens(context.text) == context.tokens


def _caps(**kw: object) -> RunConfig:
    return RunConfig.model_validate(kw)


def test_rules_done_wins_on_the_last_iteration() -> None:
    state = RunState(iterations_done=3)
    outcome = rules.IterationOutcome(verified_done=True, progress=True, fingerprint=None, agent_failed=False)
    assert rules.after_iteration(state, _caps(max_iterations=3), outcome)[0] is StopReason.DONE  # type: ignore[index]


@pytest.mark.parametrize(("state", "caps", "reason"), [
    (RunState(iterations_done=5), {"max_iterations": 5}, StopReason.MAX_ITERATIONS),
    (RunState(elapsed_seconds=61), {"max_time": "1m"}, StopReason.MAX_TIME),
    (RunState(spend_usd=Decimal("5.00")), {"budget_usd": "5"}, StopReason.BUDGET),
    (RunState(tokens_in=900, tokens_out=100), {"max_tokens": 1000}, StopReason.BUDGET),
])
def test_rules_before_iteration(state: RunState, caps: dict[str, object], reason: StopReason) -> None:
    decision = rules.before_iteration(state, _caps(**caps))
    assert decision is not None and decision[0] is reason


def test_streaks() -> None:
    state = RunState()
    stuck = rules.IterationOutcome(verified_done=False, progress=True, fingerprint="abc", agent_failed=False)
    for expected in (1, 2, 3):
        rules.update_streaks(state, stuck)
        assert state.stuck_streak == expected
    assert rules.after_iteration(state, _caps(), stuck)[0] is StopReason.STUCK  # type: ignore[index]
    idle = rules.IterationOutcome(verified_done=False, progress=False, fingerprint=None, agent_failed=False)
    rules.update_streaks(state, idle)
    assert (state.stuck_streak, state.no_progress_streak) == (0, 1)


@pytest.mark.parametrize(("text", "seconds"), [(90, 90.0), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0),
                                               ("1h30m", 5400.0), ("1.5h", 5400.0)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "-1", 0, "", "h", True])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_config_error_carries_key_line_and_allowed() -> None:
    text = '[run]\nmode = "build"\n\n[gates.tests]\ncommand = ["x"]\ntimout = "1m"\n'
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert err.value.key == "gates.tests.timout" and err.value.line == 6
    assert "timeout" in (err.value.allowed or [])


def test_find_key_line_handles_dotted_and_inline_keys() -> None:
    text = "[run]\nmax_time = 5\n[policy]\nlimits.cpu = 3\n[gates]\ntests = { command = ['x'] }\n"
    assert find_key_line(text, ("run", "max_time")) == 2
    assert find_key_line(text, ("policy", "limits", "cpu")) == 4
    assert find_key_line(text, ("gates", "tests", "command")) == 6


def test_money_is_decimal_and_never_float() -> None:
    config = parse_config('[run]\nbudget_usd = "$2.10"\n')
    assert config.run.budget_usd == Decimal("2.10") and isinstance(config.run.budget_usd, Decimal)
    with pytest.raises(ConfigError, match=r"run\.budget_usd"):
        parse_config('[run]\nbudget_usd = "-3"\n')


def test_money_is_checked_before_the_agent_call_of_the_last_allowed_iteration() -> None:
    # The iteration being run is already counted: its cap must not hide a budget already spent.
    state = RunState(iterations_done=3, spend_usd=Decimal("5.00"))
    caps = _caps(max_iterations=3, budget_usd="5")
    assert rules.before_iteration(state, caps)[0] is StopReason.MAX_ITERATIONS  # type: ignore[index]
    assert rules.before_agent_call(state, caps)[0] is StopReason.BUDGET  # type: ignore[index]
    assert rules.before_agent_call(RunState(iterations_done=3), caps) is None


def test_done_blockers_name_broken_gates_and_targets_left_and_plan_mode_keeps_only_regressions() -> None:
    from onloop.config import parse_config
    from onloop.gates.baseline import GateVerdict
    from onloop.loop.plan import parse_plan
    from onloop.loop.verify import Delta, done_blockers

    def verdict(**fields: object) -> GateVerdict:
        values: dict[str, object] = {"gate": "tests", "required": True, "new_failures": (), "tolerated": (),
                                     "targets": ("t::spec",), "targets_left": ("t::spec",), "fixed": (),
                                     "vanished": (), "checks_total": 3, "exit_code": 1, "timed_out": False,
                                     "duration": 0.1}
        return GateVerdict(**{**values, **fields})  # type: ignore[arg-type]

    delta = Delta((), (), (), 1, 1, 0, 1)
    build, plan = parse_config('[run]\nmode = "build"\n'), parse_config('[run]\nmode = "plan"\n')
    closed = parse_plan("- [x] one\n")

    assert done_blockers(build, {"tests": verdict()}, closed, delta) == [
        "gate tests has 1 target(s) still failing: t::spec"]
    assert done_blockers(plan, {"tests": verdict()}, closed, delta) == []
    assert done_blockers(plan, {"tests": verdict(broken="timed out after 5s")}, closed, delta) == [
        "gate tests is broken (timed out after 5s)"]
    assert done_blockers(build, {"tests": verdict(required=False)}, closed, delta) == []
