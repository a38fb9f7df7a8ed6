"""Terminal escapes in tool output: asked away in the environment, stripped from what is parsed anyway.

A gate's command may force colour whatever its environment says (`pytest --color=yes`, a CI's
`FORCE_COLOR`, a tool that colours when it likes): `FAILED` written as `\\x1b[31mFAILED\\x1b[0m` is not
the word a parser looks for, and a failing run would read as "no failing checks". So gates get an
environment that asks for plain text (`PLAIN_ENV`, the colour switches forcing it removed), and every
text a parser or a person reads goes through `strip_escapes` first: ECMA-48 control sequences (CSI,
7- and 8-bit), operating-system commands (OSC: window titles, hyperlinks), the other string controls
(DCS, PM, APC, SOS) and two-character escapes; a lone ESC goes too.
"""

from __future__ import annotations

import re

# What a tool reads to decide to colour its output, and the value that means "no".
PLAIN_ENV = {"NO_COLOR": "1", "TERM": "dumb", "PY_COLORS": "0", "CLICOLOR": "0", "MYPY_FORCE_COLOR": "0",
             "COLUMNS": "200"}
# Switches that force colour over NO_COLOR (FORCE_COLOR=0 means "no colour" to most tools, but not to
# all of them): never passed to a gate.
FORCING_ENV = ("FORCE_COLOR", "CLICOLOR_FORCE", "PY_FORCE_COLOR", "TTY_COMPATIBLE")

_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, erase line
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC, ended by BEL or ST (or never)
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]"  # two-character escapes (charset selection, keypad modes, RIS)
    r"|\x1b"  # a lone ESC at the end
)


def strip_escapes(text: str) -> str:
    """`text` without terminal escape sequences (cheap when there are none)."""
    return _ESCAPES.sub("", text) if ("\x1b" in text or _has_c1(text)) else text


def plain_env(env: dict[str, str]) -> dict[str, str]:
    """`env` asking every tool for plain text: the colour-forcing switches removed, `PLAIN_ENV` set."""
    kept = {k: v for k, v in env.items() if k not in FORCING_ENV}
    return {**kept, **PLAIN_ENV}


def _has_c1(text: str) -> bool:
    return any(c in text for c in "\x9b\x9d\x90\x98\x9e\x9f")
