"""textstats: small statistics about a text."""

from __future__ import annotations

import re

_WORD = re.compile(r"[A-Za-z']+")


def words(text: str) -> list[str]:
    """The words of `text`, lower-cased, punctuation dropped."""
    return [w.lower() for w in _WORD.findall(text)]


def word_count(text: str) -> int:
    return len(words(text))
