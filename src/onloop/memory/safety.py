"""Secret and personal-data detection for memory, behind two functions.

`find_secret(text)` and `find_pii(text)` return the *name* of the first rule that matched (never the
matched text, so callers cannot leak it by accident); `scrub(text)` replaces every match with a
placeholder, for profile values that come from the repository.

Secret detection delegates to `onloop.policy.secrets`, onloop's one secret detector (token formats,
quoted credential assignments, encoded secrets, its entropy rule). Memory's stricter rules stay here on top,
because memory can afford to be stricter than the diff audit: a refused note only has to be
rephrased, while a certain match in the audit blocks a whole iteration. They are looser spellings of
known token formats (no word boundaries), an *unquoted* credential assignment (`password: hunter2`),
and a lower entropy bar for 32+ character tokens.

The rules are deliberately conservative where a false positive would be cheap (a note can be
rephrased) and precise where it would be costly: card numbers must pass Luhn, IBANs the mod-97 check,
passport-like ids need a context word, and the entropy rule ignores hex (a sha256 is not a secret).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from onloop.policy import secrets

# Memory-only rules, checked after `onloop.policy.secrets`. The token forms are memory's older, looser
# spellings of formats the shared detector also knows (no word boundaries, `\w` bodies, any PEM header):
# memory has always refused these, but the shared detector cannot adopt them without the diff audit
# blocking on identifiers such as `task-runner-configuration-file`, so they stay memory's own.
_MEMORY_SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("openai_key", re.compile(r"sk-[A-Za-z0-9_-]{20,}")),
    ("github_token", re.compile(r"gh[pousr]_[A-Za-z0-9]{36,}")),
    ("github_pat", re.compile(r"github_pat_\w{22,}")),
    ("aws_access_key", re.compile(r"AKIA[0-9A-Z]{16}")),
    ("slack_token", re.compile(r"xox[baprs]-[\w-]{10,}")),
    ("private_key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("credential_assignment", re.compile(r"(?i)\b(password|passwd|secret|token|api[_-]?key)\s*[:=]\s*\S+")),
)
_ENTROPY_CANDIDATE = re.compile(r"[A-Za-z0-9+/=_-]{32,}")
_HEX_ONLY = re.compile(r"^[0-9a-fA-F]+$")

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
_PHONE_E164 = re.compile(r"(?<![\w+])\+[1-9]\d{7,14}\b")
_PHONE_NANP = re.compile(r"(?<![\w-])(?:\+?1[-.\s]?)?\(?[2-9]\d{2}\)?[-.\s]\d{3}[-.\s]\d{4}\b")
_SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
_CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_PASSPORT = re.compile(r"\b[A-Z]{1,2}\d{6,9}\b")
_PASSPORT_CONTEXT = re.compile(r"(?i)\b(passport|national id|id card|driver'?s licen[cs]e)\b")
_DATE_ANY = re.compile(
    r"(?i)\b(\d{4}-\d{2}-\d{2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}|"
    r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? \d{1,2},? \d{4}|"
    r"\d{1,2} (jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]* \d{4})\b"
)
_BIRTH_CONTEXT = re.compile(r"(?i)\b(born|dob|date of birth|birthday|birth date)\b")
HOME_PATH = re.compile(r"/(?:home|Users)/[^/\s`'\"]+")


def find_secret(text: str) -> str | None:
    """The name of the first secret rule `text` trips, or None."""
    found = secrets.find_secrets(text)
    if found:
        return found[0].kind
    for name, pattern in _MEMORY_SECRET_PATTERNS:
        if pattern.search(text):
            return name
    if any(_entropic(m.group(0)) for m in _ENTROPY_CANDIDATE.finditer(text)):
        return "high_entropy"
    return None


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _cards(text: str) -> Iterator[str]:
    for match in _CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group(0))
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            yield "card_number"


def _near(pattern: re.Pattern[str], context: re.Pattern[str], text: str, window: int = 40) -> bool:
    for match in pattern.finditer(text):
        around = text[max(0, match.start() - window) : match.end() + window]
        if context.search(around):
            return True
    return False


def _pii_rules() -> tuple[tuple[str, Callable[[str], bool]], ...]:
    return (
        ("email", lambda t: bool(_EMAIL.search(t))),
        ("ssn", lambda t: bool(_SSN.search(t))),
        ("card_number", lambda t: any(True for _ in _cards(t))),
        ("iban", lambda t: any(iban_ok(m.group(0)) for m in _IBAN.finditer(t))),
        ("phone", lambda t: bool(_PHONE_E164.search(t) or _PHONE_NANP.search(t))),
        ("passport", lambda t: _near(_PASSPORT, _PASSPORT_CONTEXT, t)),
        ("date_of_birth", lambda t: _near(_DATE_ANY, _BIRTH_CONTEXT, t)),
    )


_PII_RULES = _pii_rules()


def find_pii(text: str) -> str | None:
    """The name of the first personal-data rule `text` trips, or None. Home paths are not here: they
    are rewritten (`rewrite_home_paths`), not refused."""
    for name, rule in _PII_RULES:
        if rule(text):
            return name
    return None


def rewrite_home_paths(text: str) -> str:
    """`/home/alice/src` becomes `~/src`: the path stays useful, the user name goes."""
    return HOME_PATH.sub("~", text)


def scrub(text: str) -> str:
    """Replace secrets and personal data in repository-derived text (profile values) with placeholders."""
    out = secrets.scrub(rewrite_home_paths(text), placeholder="[REDACTED]")
    for _name, pattern in _MEMORY_SECRET_PATTERNS:
        out = pattern.sub("[REDACTED]", out)
    out = _ENTROPY_CANDIDATE.sub(
        lambda m: "[REDACTED]" if _entropic(m.group(0)) else m.group(0), out
    )
    for pattern in (_EMAIL, _SSN, _PHONE_E164, _PHONE_NANP):
        out = pattern.sub("[REDACTED]", out)
    if any(True for _ in _cards(out)):
        out = _CARD.sub("[REDACTED]", out)
    return out


def _entropic(candidate: str) -> bool:
    # Digests (hex) and paths are not credentials, however random they look; and a generated key of
    # 32+ characters practically always mixes digits with letters, while long kebab- or snake-case
    # identifiers (`pytest-xdist-worker-count-override`) do not.
    if _HEX_ONLY.match(candidate) or "/" in candidate.strip("/"):
        return False
    if not (any(c.isdigit() for c in candidate) and any(c.isalpha() for c in candidate)):
        return False
    return secrets.shannon_entropy(candidate) > 4.0
