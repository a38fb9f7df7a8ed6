"""Finding secrets in text, and scrubbing them out of everything onloop stores.

Two kinds of detector:
- well-known token formats (AWS, GitHub, OpenAI, Anthropic, Slack, PEM private keys, JWTs) and
  `password = "..."`-style assignments: precise, so the diff audit blocks on them;
- high-entropy tokens (Shannon entropy of base64-like runs of 24+ characters mixing upper case, lower
  case and digits): catches unknown formats, with false positives possible, so the audit only warns.
  Hex runs are deliberately not scored: commit ids, checksums and content hashes are everywhere in
  code and would drown the signal; a hex secret assigned to a secret-looking name is still caught by
  the assignment detector.

`scrub(text)` replaces every match with `[REDACTED:<kind>]`; the loop uses it for logs, transcripts,
memory notes and receipts. Nothing here ever returns the secret itself in a message.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ENTROPY_THRESHOLD = 4.5
ENTROPY_MIN_LENGTH = 24


@dataclass(frozen=True, slots=True)
class SecretMatch:
    """Where a secret is in a text: `text[start:end]` is the secret (or the secret value)."""

    kind: str
    start: int
    end: int
    certain: bool  # a known format (True) or only high entropy (False)

    @property
    def placeholder(self) -> str:
        return f"[REDACTED:{self.kind}]"


# Order matters where formats overlap: sk-ant- must be claimed before the generic sk- of OpenAI.
_PATTERNS: tuple[tuple[str, re.Pattern[str], int], ...] = (
    ("private_key", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY"
        r"(?: BLOCK)?-----|.*\Z)", re.DOTALL), 0),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"), 0),
    ("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"), 0),
    ("anthropic_key", re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{20,}"), 0),
    ("openai_key", re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"), 0),
    ("slack_token", re.compile(r"\bxox[abposre]-[A-Za-z0-9\-]{10,}"), 0),
    ("jwt", re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+"), 0),
    ("password_assignment", re.compile(
        r"(?i)\b[\w.\-]*(?:password|passwd|pwd|secret|api_?key|access_?key|auth_?token|token)[\w\-]*"
        r"[\"'\]]{0,2}\s*[:=]\s*[\"']([^\"'\s]{6,})[\"']"), 1),
)

# Values that are clearly not secrets: placeholders and references to where the secret really is.
_PLACEHOLDER = re.compile(
    r"(?i)^(?:\$\{?.*|<.*>|\{\{.*\}\}|%\(.*|x{4,}|\*{4,}|changeme|change_me|example.*|dummy.*|"
    r"placeholder.*|your[_\-].*|redacted.*|\[REDACTED:.*|none|null|true|false|os\.environ.*)$"
)
_TOKEN = re.compile(r"[A-Za-z0-9+/_\-]{" + str(ENTROPY_MIN_LENGTH) + r",}={0,2}")


def shannon_entropy(text: str) -> float:
    """Bits per character of `text` (0 for empty text)."""
    if not text:
        return 0.0
    counts = Counter(text)
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def find_secrets(text: str, *, entropy: bool = True) -> list[SecretMatch]:
    """Every secret in `text`, known formats first, without overlaps, in text order."""
    found: list[SecretMatch] = []
    for kind, pattern, group in _PATTERNS:
        for match in pattern.finditer(text):
            start, end = match.span(group)
            if kind == "password_assignment" and _PLACEHOLDER.match(match.group(group)):
                continue
            if not _overlaps(found, start, end):
                found.append(SecretMatch(kind, start, end, certain=True))
    for match in _HEX.finditer(text):  # a known secret hex-encoded (the entropy rule skips hex on purpose)
        start, end = match.span()
        if not _overlaps(found, start, end) and _decoded_secret(match.group()):
            found.append(SecretMatch("encoded_secret", start, end, certain=True))
    if entropy:
        for match in _TOKEN.finditer(text):
            start, end = match.span()
            if _looks_random(match.group()) and not _overlaps(found, start, end):
                found.append(SecretMatch("high_entropy", start, end, certain=False))
    return sorted(found, key=lambda m: m.start)


_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}){16,}\b")


def _decoded_secret(hex_text: str) -> bool:
    """Whether hex text decodes to printable text holding a secret of a known format."""
    try:
        decoded = bytes.fromhex(hex_text).decode("ascii")
    except ValueError:  # not ASCII: a hash or binary data, not an encoded credential
        return False
    if not decoded.isprintable():
        return False
    return any(pattern.search(decoded) for _, pattern, _ in _PATTERNS)


def _overlaps(found: list[SecretMatch], start: int, end: int) -> bool:
    return any(m.start < end and start < m.end for m in found)


def _looks_random(token: str) -> bool:
    # Paths and identifiers are long but made of words; random tokens mix every character class.
    if token.count("/") > 2 or not (
        re.search(r"[a-z]", token) and re.search(r"[A-Z]", token) and re.search(r"[0-9]", token)
    ):
        return False
    return shannon_entropy(token) >= ENTROPY_THRESHOLD


def scrub(text: str, *, entropy: bool = True, placeholder: str | None = None) -> str:
    """`text` with every secret replaced by `[REDACTED:<kind>]` (or by `placeholder`, when given)."""
    pieces: list[str] = []
    last = 0
    for match in find_secrets(text, entropy=entropy):
        pieces.append(text[last : match.start])
        pieces.append(match.placeholder if placeholder is None else placeholder)
        last = match.end
    pieces.append(text[last:])
    return "".join(pieces)


def scrub_file(path: Path) -> bool:
    """Redact secrets in a log file in place (atomically); returns whether anything was redacted."""
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8", errors="replace")
    clean = scrub(text)
    if clean == text:
        return False
    tmp = path.with_name(path.name + ".scrubbed")
    tmp.write_text(clean, encoding="utf-8")
    os.replace(tmp, path)
    return True


def contains_secret(text: str) -> bool:
    return any(m.certain for m in find_secrets(text, entropy=False))
