"""Phase 4, trimming: keep the last N user turns of a conversation, whole, with tool pairs intact.

A *turn* starts at a user message that is not synthetic (onloop's own injected user messages carry
`name == SYNTHETIC`); tool results never start one. Trimming keeps the leading system messages, cuts
the history at the start of the N-th user turn from the end, then (optionally) drops the oldest whole
turns while the window is over a token budget and more than one turn remains. After any cut, and
after `get_items(limit)`, pair integrity is restored: the window starts at a user turn, a tool result
whose call is gone is removed, and a call whose result is missing is removed unless it belongs to the
newest, still in-flight turn (openai-agents-python issue #4322 is the bug this prevents).

Turns are numbered from the start of the session (`first_turn_index` onwards), and a trim reports the
highest dropped turn: `record_trim` stores it, with the sticky `inject_session_block` flag, so that
the next injection re-renders exactly the session notes whose `source_turn` was cut. In onloop's loop
a turn is an iteration, so notes saved with `turn=iteration` line up.

`TrimmingSession` wraps this in the shape of the Agents SDK `Session` protocol (async get/add/pop/clear
under one asyncio lock), over `onloop.models.base.Message` items.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from onloop.clock import Clock
from onloop.memory.model import estimate_tokens
from onloop.memory.repo import MemoryRepo
from onloop.models.base import Message
from onloop.store.db import Database

SYNTHETIC = "onloop"
MAX_TOOL_OUTPUT_BYTES = 8 * 1024
TokenCounter = Callable[[Sequence[Message]], int]


def is_turn_start(message: Message) -> bool:
    return message.role == "user" and message.name != SYNTHETIC


def count_tokens(messages: Sequence[Message]) -> int:
    total = 0
    for message in messages:
        total += estimate_tokens(message.content) + 4
        for call in message.tool_calls:
            total += estimate_tokens(call.name + json.dumps(dict(call.arguments), sort_keys=True))
    return total


def truncate_tool_output(content: str, limit: int = MAX_TOOL_OUTPUT_BYTES) -> str:
    """Head and tail of an oversized tool output; the full output belongs in the run log."""
    data = content.encode("utf-8")
    if len(data) <= limit:
        return content
    half = limit // 2
    head = data[:half].decode("utf-8", errors="ignore")
    tail = data[-half:].decode("utf-8", errors="ignore")
    return f"{head}\n…[truncated {len(data) - 2 * half} bytes]…\n{tail}"


@dataclass(frozen=True, slots=True)
class TrimResult:
    messages: tuple[Message, ...]
    dropped_turns: tuple[int, ...]  # session-wide indices of the user turns cut away

    @property
    def highest_dropped_turn(self) -> int:
        return max(self.dropped_turns, default=-1)


def _split_head(messages: Sequence[Message]) -> tuple[list[Message], list[Message]]:
    index = 0
    while index < len(messages) and messages[index].role == "system":
        index += 1
    return list(messages[:index]), list(messages[index:])


def _starts(body: Sequence[Message]) -> list[int]:
    return [i for i, m in enumerate(body) if is_turn_start(m)]


def trim_messages(
    messages: Sequence[Message],
    max_turns: int = 8,
    max_tokens: int | None = None,
    token_counter: TokenCounter = count_tokens,
    first_turn_index: int = 0,
) -> TrimResult:
    """The trimmed conversation and the indices of the user turns it dropped."""
    head, body = _split_head(messages)
    starts = _starts(body)
    keep = max(len(starts) - max_turns, 0)
    if max_tokens is not None:
        while keep < len(starts) - 1 and token_counter([*head, *(body[starts[keep]:] if keep else body)]) > max_tokens:
            keep += 1
    if keep == 0:
        return TrimResult(tuple(head + repair_pairs(body)), ())
    window = body[starts[keep]:]
    dropped = tuple(range(first_turn_index, first_turn_index + keep))
    return TrimResult(tuple(head + repair_pairs(window)), dropped)


def repair_pairs(window: Sequence[Message], *, from_turn_start: bool = False) -> list[Message]:
    """Remove orphan tool results and orphan calls (except in the newest turn); with
    `from_turn_start`, also drop leading items until the first user turn."""
    items = list(window)
    if from_turn_start:
        first = next((i for i, m in enumerate(items) if is_turn_start(m)), len(items))
        items = items[first:]
    calls = {c.id for m in items if m.role == "assistant" for c in m.tool_calls}
    outputs = {m.tool_call_id for m in items if m.role == "tool"}
    newest_start = max(_starts(items), default=0)
    result: list[Message] = []
    for index, message in enumerate(items):
        if message.role == "tool" and message.tool_call_id not in calls:
            continue
        if message.role == "assistant" and message.tool_calls and index < newest_start:
            answered = tuple(c for c in message.tool_calls if c.id in outputs)
            if len(answered) != len(message.tool_calls):
                if not answered and not message.content:
                    continue
                message = replace(message, tool_calls=answered)
        result.append(message)
    return result


def record_trim(db: Database, session_id: str, highest_dropped_turn: int, clock: Clock) -> None:
    """Remember the cut: `trimmed_turns_upto` only grows, and the session block flag stays set."""
    if highest_dropped_turn < 0:
        return
    repo = MemoryRepo(db, clock)
    with repo.tx():
        session = repo.session(session_id)
        if session is None:
            return
        upto = max(session.trimmed_turns_upto, highest_dropped_turn)
        repo.update_session(session_id, trimmed_turns_upto=upto, inject_session_block=1)
        repo.audit("trim", "TRIMMED", session_id=session_id, detail={"trimmed_turns_upto": upto})


class TrimmingSession:
    """Structurally an Agents SDK `Session`, over onloop messages. `on_trim(highest_dropped_turn)` is
    called after a trim that removed at least one user turn (use `record_trim` to persist it)."""

    session_settings = None

    def __init__(self, session_id: str, max_turns: int = 8, max_tokens: int | None = None,
                 token_counter: TokenCounter = count_tokens,
                 on_trim: Callable[[int], None] | None = None) -> None:
        self.session_id = session_id
        self.max_turns = max_turns
        self.max_tokens = max_tokens
        self.token_counter = token_counter
        self.on_trim = on_trim
        self.trimmed_turns_upto = -1
        self.inject_session_block = False
        self._items: list[Message] = []
        self._raw: list[Message] = []
        self._first_turn = 0
        self._lock = asyncio.Lock()

    async def get_items(self, limit: int | None = None) -> list[Message]:
        async with self._lock:
            if limit is None or limit >= len(self._items):
                return list(self._items)
            head, body = _split_head(self._items)
            tail = body[-limit:] if limit > 0 else []
            return head + repair_pairs(tail, from_turn_start=True)

    async def add_items(self, items: list[Message]) -> None:
        async with self._lock:
            fitted = [replace(m, content=truncate_tool_output(m.content)) if m.role == "tool" else m for m in items]
            self._raw += items
            result = trim_messages([*self._items, *fitted], self.max_turns, self.max_tokens, self.token_counter,
                                   self._first_turn)
            self._items = list(result.messages)
            if result.dropped_turns:
                self._first_turn += len(result.dropped_turns)
                self.trimmed_turns_upto = max(self.trimmed_turns_upto, result.highest_dropped_turn)
                self.inject_session_block = True  # sticky: never reset once a turn was cut
                if self.on_trim is not None:
                    self.on_trim(result.highest_dropped_turn)

    async def pop_item(self) -> Message | None:
        async with self._lock:
            return self._items.pop() if self._items else None

    async def clear_session(self) -> None:
        async with self._lock:
            self._first_turn += len(_starts(_split_head(self._items)[1]))
            self._items = []

    def raw_items(self) -> list[Message]:
        """The untrimmed history, for debugging only."""
        return list(self._raw)
