"""Trimming: the tiny example, pair integrity, and Hypothesis properties over random conversations."""

from __future__ import annotations

import asyncio
from itertools import count

from hypothesis import given, settings
from hypothesis import strategies as st

from onloop.memory.repo import MemoryRepo
from onloop.memory.trim import (
    SYNTHETIC,
    TrimmingSession,
    count_tokens,
    is_turn_start,
    record_trim,
    repair_pairs,
    trim_messages,
    truncate_tool_output,
)
from onloop.models.base import Message, ToolCall
from onloop.store.db import Database
from tests.memory.conftest import FrozenClock, session


def user(i: int) -> Message:
    return Message("user", f"u{i}")


def assistant(i: int) -> Message:
    return Message("assistant", f"a{i}")


def test_tiny_example_keeps_last_two_turns() -> None:
    items = [user(0), assistant(1), user(2), assistant(3), user(4), assistant(5), user(6), assistant(7)]
    result = trim_messages(items, max_turns=2)
    assert [m.content for m in result.messages] == ["u4", "a5", "u6", "a7"]
    assert result.dropped_turns == (0, 1) and result.highest_dropped_turn == 1


def test_system_head_is_kept_and_synthetic_users_do_not_start_turns() -> None:
    items = [Message("system", "sys"), user(0), Message("user", "memory block", name=SYNTHETIC), assistant(1),
             user(2), assistant(3)]
    result = trim_messages(items, max_turns=1)
    assert [m.content for m in result.messages] == ["sys", "u2", "a3"]
    assert not is_turn_start(items[2])


def test_cut_never_leaves_an_orphan_tool_output() -> None:
    call = ToolCall("c1", "run", {"cmd": "ls"})
    items = [user(0), Message("assistant", "", tool_calls=(call,)), Message("tool", "out", tool_call_id="c1"),
             user(1), Message("tool", "late", tool_call_id="c1"), assistant(2)]
    result = trim_messages(items, max_turns=1)
    assert [m.content for m in result.messages] == ["u1", "a2"]


def test_in_flight_call_in_newest_turn_is_kept() -> None:
    call = ToolCall("c9", "run", {})
    items = [user(0), assistant(1), user(1), Message("assistant", "", tool_calls=(call,))]
    assert trim_messages(items, max_turns=1).messages[-1].tool_calls == (call,)


def test_unanswered_call_in_older_turn_is_removed_but_content_kept() -> None:
    answered, lost = ToolCall("a", "x", {}), ToolCall("b", "x", {})
    items = [user(0), Message("assistant", "thinking", tool_calls=(answered, lost)),
             Message("tool", "ok", tool_call_id="a"), user(1)]
    repaired = repair_pairs(items)
    assert repaired[1].tool_calls == (answered,) and repaired[1].content == "thinking"


def test_token_budget_drops_whole_turns_but_keeps_one() -> None:
    items = [Message("user", "x" * 400), assistant(1), Message("user", "y" * 400), assistant(2)]
    result = trim_messages(items, max_turns=8, max_tokens=150)
    assert [m.content[:1] for m in result.messages] == ["y", "a"] and result.dropped_turns == (0,)
    assert len(trim_messages(items, max_turns=8, max_tokens=1).messages) == 2


def test_truncate_tool_output_head_and_tail() -> None:
    big = "H" * 5000 + "M" * 10000 + "T" * 5000
    cut = truncate_tool_output(big)
    assert cut.startswith("H" * 100) and cut.endswith("T" * 100) and "[truncated 11808 bytes]" in cut
    assert truncate_tool_output("small") == "small"


def test_record_trim_is_sticky_and_monotonic(db: Database, repo: MemoryRepo, clock: FrozenClock) -> None:
    sid = session(repo)
    record_trim(db, sid, -1, clock)
    state = repo.session(sid)
    assert state is not None and not state.inject_session_block
    record_trim(db, sid, 4, clock)
    record_trim(db, sid, 2, clock)
    state = repo.session(sid)
    assert state is not None and state.inject_session_block and state.trimmed_turns_upto == 4


def test_trimming_session_protocol() -> None:
    seen: list[int] = []
    trimming = TrimmingSession("s", max_turns=2, on_trim=seen.append)

    async def scenario() -> None:
        for turn in range(3):
            await trimming.add_items([user(turn), assistant(turn)])
        assert [m.content for m in await trimming.get_items()] == ["u1", "a1", "u2", "a2"]
        assert [m.content for m in await trimming.get_items(limit=1)] == []  # "a2" alone is not a turn start
        assert [m.content for m in await trimming.get_items(limit=2)] == ["u2", "a2"]
        assert (await trimming.pop_item()) == assistant(2)
        await trimming.add_items([assistant(9), user(3)])
        await trimming.clear_session()
        assert await trimming.get_items() == [] and await trimming.pop_item() is None

    asyncio.run(asyncio.wait_for(scenario(), timeout=10))
    assert seen == [0, 1] and trimming.trimmed_turns_upto == 1 and trimming.inject_session_block
    assert len(trimming.raw_items()) == 8


# -- properties ------------------------------------------------------------------------------------


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    ids = count()
    items: list[Message] = []
    if draw(st.booleans()):
        items.append(Message("system", "sys"))
    if draw(st.booleans()):
        items.append(Message("assistant", f"stray{next(ids)}"))
    for _ in range(draw(st.integers(0, 12))):
        items.append(Message("user", f"u{next(ids)}"))
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(["text", "calls", "synthetic", "orphan_output"]))
            if kind == "text":
                items.append(Message("assistant", f"a{next(ids)}"))
            elif kind == "synthetic":
                items.append(Message("user", f"syn{next(ids)}", name=SYNTHETIC))
            elif kind == "orphan_output":
                items.append(Message("tool", f"o{next(ids)}", tool_call_id=f"ghost{next(ids)}"))
            else:
                calls = tuple(ToolCall(f"c{next(ids)}", "run", {}) for _ in range(draw(st.integers(1, 2))))
                items.append(Message("assistant", draw(st.sampled_from(["", f"t{next(ids)}"])), tool_calls=calls))
                for call in calls:
                    if draw(st.integers(0, 4)):  # sometimes the output is missing
                        items.append(Message("tool", f"out{next(ids)}", tool_call_id=call.id))
    return items


def _body(messages: tuple[Message, ...] | list[Message]) -> list[Message]:
    index = 0
    while index < len(messages) and messages[index].role == "system":
        index += 1
    return list(messages[index:])


def _assert_pairs(window: list[Message]) -> None:
    calls = {c.id for m in window for c in m.tool_calls}
    outputs = {m.tool_call_id for m in window if m.role == "tool"}
    assert all(m.tool_call_id in calls for m in window if m.role == "tool"), "orphan output"
    starts = [i for i, m in enumerate(window) if is_turn_start(m)]
    newest = starts[-1] if starts else 0
    for i, message in enumerate(window):
        if i < newest:
            assert all(c.id in outputs for c in message.tool_calls), "orphan call outside the in-flight turn"


def _plain(messages: list[Message]) -> list[tuple[str, str]]:
    """Everything pair repair may not remove: messages that are not tool outputs or bare calls."""
    return [(m.role, m.content) for m in messages if m.role != "tool" and not (m.tool_calls and not m.content)]


@settings(max_examples=300, deadline=None)
@given(conversations(), st.integers(1, 5))
def test_trim_properties(items: list[Message], max_turns: int) -> None:
    result = trim_messages(items, max_turns=max_turns)
    body, out = _body(items), _body(result.messages)
    turns_in = sum(1 for m in body if is_turn_start(m))
    turns_out = sum(1 for m in out if is_turn_start(m))
    assert turns_out == min(turns_in, max_turns)
    assert bool(result.dropped_turns) == (turns_in > max_turns)  # the flag is set iff a user turn was dropped
    if result.dropped_turns:
        assert out and is_turn_start(out[0])
    start = body.index(out[0]) if out else len(body)
    assert _plain(out) == _plain(body[start:])  # a suffix of the input, modulo orphan removal
    _assert_pairs(out)
    again = trim_messages(result.messages, max_turns=max_turns)
    assert again.messages == result.messages and again.dropped_turns == ()


@settings(max_examples=200, deadline=None)
@given(conversations(), st.integers(1, 5), st.integers(10, 200))
def test_token_budget_properties(items: list[Message], max_turns: int, max_tokens: int) -> None:
    result = trim_messages(items, max_turns=max_turns, max_tokens=max_tokens)
    out = _body(result.messages)
    turns = sum(1 for m in out if is_turn_start(m))
    assert turns <= max_turns
    assert count_tokens(result.messages) <= max_tokens or turns <= 1  # over budget only with a single turn left
    _assert_pairs(out)


@settings(max_examples=150, deadline=None)
@given(conversations(), st.integers(1, 5), st.integers(0, 30))
def test_get_items_limit_keeps_pair_integrity(items: list[Message], max_turns: int, limit: int) -> None:
    trimming = TrimmingSession("p", max_turns=max_turns)

    async def scenario() -> list[Message]:
        await trimming.add_items(items)
        return await trimming.get_items(limit=limit)

    window = _body(asyncio.run(scenario()))
    _assert_pairs(window)
    if window and limit < len(trimming._items):
        assert is_turn_start(window[0])
